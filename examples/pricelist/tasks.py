"""The worker side of the example: work that fans out, gathers, and waits for a person.

Run by ``ckptd worker ... pricelist.tasks:handle`` for the queues ``price``, ``quote`` and
``pricelist``. The handler is ``async def``: the worker runs it on an event loop, with
``--concurrency`` jobs in flight at once.

- ``price`` (a chunk of the customer's items file): fans out per supplier, one ``quote``
  child each (``job.spawn``, ids ``<chunk>.<supplier>``: a chunk that runs again creates
  nothing twice), then parks until they have all ended (``Park(children=True)``: no worker
  slot is held meanwhile). Woken, it prices each item from the suppliers' quotes.
- ``quote``: asks one supplier about every item of a chunk, over HTTP (aiohttp), and
  checkpoints after each item, so an attempt that is cut short resumes at the next one.
- ``pricelist`` (the batch's reduce, made once every chunk and every quote has ended):
  writes the price list as a draft into the store, checkpoints it, and parks until someone
  approves it: a signal, ``ckptd signal pricelist <id> approved`` or a file dropped into
  ``<store>/pricelist/signals/<id>.approved.json``. Then it publishes the list.

The suppliers' addresses come from $PRICELIST_SUPPLIERS (``name=http://host:port,...``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from typing import Any

import aiohttp

from ckptd import AsyncJob, Fail, Park, Retry

from .policies import price_line

COLUMNS = ["sku", "name", "status", "supplier", "cost", "price", "shipping", "lead_days"]
SUPPLIER_TIMEOUT = 1.0
SUPPLIER_TRIES = 4
APPROVAL = "approved"


def suppliers() -> dict[str, str]:
    """name -> base URL, from $PRICELIST_SUPPLIERS."""
    spec = os.environ.get("PRICELIST_SUPPLIERS", "")
    pairs = [p.split("=", 1) for p in spec.split(",") if "=" in p]
    if not pairs:
        raise RuntimeError("PRICELIST_SUPPLIERS is not set (name=http://host:port,...)")
    return {name: url for name, url in pairs}


async def ask(session: aiohttp.ClientSession, base_url: str, sku: str) -> dict[str, Any]:
    """One supplier's quote, retrying its transient failures (503, timeouts) a few times."""
    timeout = aiohttp.ClientTimeout(total=SUPPLIER_TIMEOUT)
    for attempt in range(1, SUPPLIER_TRIES + 1):
        try:
            async with session.get(f"{base_url}/quote", params={"sku": sku},
                                   timeout=timeout) as response:
                response.raise_for_status()
                return dict(await response.json())
        except (aiohttp.ClientError, TimeoutError) as exc:
            if attempt == SUPPLIER_TRIES:
                # Still failing: let ckptd retry the job later (from its checkpoint).
                raise Retry(f"supplier {base_url} unavailable: {exc!r}", delay=1.0) from None
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


async def handle(job: AsyncJob) -> dict[str, Any]:
    """The worker's entry point: a chunk, one supplier's quotes, or the price list."""
    if job.queue == "pricelist":
        return await price_list(job)
    if job.queue == "quote":
        return await quote(job)
    return await price(job)


async def items_of(job: AsyncJob) -> list[dict[str, Any]]:
    """The items of a chunk: its range of the items file (or a list, when given one)."""
    return await job.records() if "source" in job.payload else list(job.payload["items"])


async def price(job: AsyncJob) -> dict[str, Any]:
    """A chunk: one quote job per supplier, a park until they ended, then one line each."""
    items = await items_of(job)
    if job.woken is None:
        skus = [item["sku"] for item in items]
        for name in suppliers():
            await job.spawn("quote", {"supplier": name, "skus": skus}, key=name)
        raise Park("waiting for the suppliers' quotes", children=True)
    offers: dict[str, list[dict[str, Any]]] = {item["sku"]: [] for item in items}
    for ref, state in sorted(job.children.items()):
        if state != "done":
            raise Fail(f"the quotes of {ref} {state}: this chunk cannot be priced")
        queue, child = ref.split("/", 1)
        for offer in (await job.result_of(queue, child))["offers"]:
            offers[offer["sku"]].append(offer)
    return {"lines": [price_line(item, offers[item["sku"]]) for item in items]}


async def quote(job: AsyncJob) -> dict[str, Any]:
    """One supplier's offers for every item of a chunk, checkpointed item by item."""
    name, skus = job.payload["supplier"], job.payload["skus"]
    base_url = suppliers()[name]
    state = job.state or {"done": 0, "offers": []}
    offers: list[dict[str, Any]] = list(state["offers"])
    async with aiohttp.ClientSession() as session:
        for position in range(int(state["done"]), len(skus)):
            offers.append(await ask(session, base_url, skus[position]))
            await job.checkpoint({"done": position + 1, "offers": offers})
            job.progress(position + 1, len(skus))
    return {"supplier": name, "offers": offers}


def write_price_list(lines: list[dict[str, Any]]) -> str:
    """The price list as CSV text, sorted by SKU."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in sorted(lines, key=lambda row: row["sku"]):
        writer.writerow({k: line.get(k, "") for k in COLUMNS})
    return out.getvalue()


async def price_list(job: AsyncJob) -> dict[str, Any]:
    """The reduce: the price list from every chunk, as a draft until it is approved."""
    day = (job.created or "")[:10] or "today"
    if job.woken is None or job.state is None:
        lines: list[dict[str, Any]] = []
        failed = []
        for member, state in job.payload["jobs"]:
            if state == "done":
                lines += (await job.result_of(job.payload["queue"], member))["lines"]
            else:
                failed.append(member)
        text = write_price_list(lines)
        draft = await job.write_output(f"pricelist-{day}.draft.csv", text)
        priced = sum(1 for line in lines if line["status"] == "ok")
        await job.checkpoint({"csv": text, "draft": draft, "lines": len(lines),
                              "priced": priced, "failed_jobs": failed})
        raise Park(f"draft at {draft}: waiting for the signal '{APPROVAL}'", signal=APPROVAL)
    summary = dict(job.state)
    location = await job.write_output(f"pricelist-{day}.csv", summary.pop("csv"))
    return {"location": location, "lines": summary["lines"], "priced": summary["priced"],
            "unavailable": summary["lines"] - summary["priced"],
            "failed_jobs": summary["failed_jobs"], "draft": summary["draft"],
            "approved": job.signals.get(APPROVAL)}
