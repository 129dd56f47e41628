"""The worker side of the example: price a chunk of items by asking every supplier.

Run by ``ckptd worker ... pricelist.tasks:handle``. The handler is ``async def``: the worker
runs it on an event loop (``--pool async`` is chosen by itself), ``--concurrency`` jobs in
flight at once, and each job asks the suppliers for an item's quotes concurrently, with
aiohttp (which ckptd already installs for its S3 support). The suppliers' addresses come
from $PRICELIST_SUPPLIERS (``name=http://host:port,...``). After each item the job
checkpoints the lines priced so far (``await job.checkpoint(...)``), so an attempt that is
cut short resumes at the next item.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from typing import Any

import aiohttp

from ckptd import AsyncJob, Retry

from .policies import price_line

COLUMNS = ["sku", "name", "status", "supplier", "cost", "price", "shipping", "lead_days"]
SUPPLIER_TIMEOUT = 1.0
SUPPLIER_TRIES = 4


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
    """The worker's entry point: price a chunk, or (the reduce) write the price list."""
    if job.queue == "pricelist":
        return await price_list(job)
    return await price(job)


async def price(job: AsyncJob) -> dict[str, Any]:
    """Price the items of a chunk of the items file; the result holds one line each."""
    items = await job.records() if "source" in job.payload else job.payload["items"]
    state = job.state or {"done": 0, "lines": []}
    lines: list[dict[str, Any]] = list(state["lines"])
    shops = suppliers()
    async with aiohttp.ClientSession() as session:
        for position in range(int(state["done"]), len(items)):
            item = items[position]
            offers = await asyncio.gather(*(ask(session, url, item["sku"])
                                            for url in shops.values()))
            lines.append(price_line(item, list(offers)))
            await job.checkpoint({"done": position + 1, "lines": lines})
            job.progress(position + 1, len(items))
    return {"lines": lines}


def write_price_list(lines: list[dict[str, Any]]) -> str:
    """The price list as CSV text, sorted by SKU."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in sorted(lines, key=lambda row: row["sku"]):
        writer.writerow({k: line.get(k, "") for k in COLUMNS})
    return out.getvalue()


async def price_list(job: AsyncJob) -> dict[str, Any]:
    """The reduce: gather every chunk's lines and write the price list into the store."""
    lines: list[dict[str, Any]] = []
    failed = []
    for member, state in job.payload["jobs"]:
        if state == "done":
            lines += (await job.result_of(job.payload["queue"], member))["lines"]
        else:
            failed.append(member)
    day = (job.created or "")[:10] or "today"
    location = await job.write_output(f"pricelist-{day}.csv", write_price_list(lines))
    priced = sum(1 for line in lines if line["status"] == "ok")
    return {"location": location, "lines": len(lines), "priced": priced,
            "unavailable": len(lines) - priced, "failed_jobs": failed}
