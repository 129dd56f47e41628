"""The worker side of the example: price a chunk of items by asking every supplier.

Run by ``ckptd worker ... pricelist.tasks:price``. The suppliers' addresses come from
$PRICELIST_SUPPLIERS (``name=http://host:port,...``). After each item the job checkpoints
the lines priced so far, so an attempt that is cut short resumes at the next item.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ckptd import Job, Retry

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


def ask(base_url: str, sku: str) -> dict[str, Any]:
    """One supplier's quote, retrying its transient failures (503, timeouts) a few times."""
    url = f"{base_url}/quote?sku={urllib.parse.quote(sku)}"
    for attempt in range(1, SUPPLIER_TRIES + 1):
        try:
            with urllib.request.urlopen(url, timeout=SUPPLIER_TIMEOUT) as response:
                return dict(json.loads(response.read()))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == SUPPLIER_TRIES:
                # Still failing: let ckptd retry the job later (from its checkpoint).
                raise Retry(f"supplier {base_url} unavailable: {exc}", delay=1.0) from None
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def handle(job: Job) -> dict[str, Any]:
    """The worker's entry point: price a chunk, or (the reduce) write the price list."""
    if job.queue == "pricelist":
        return price_list(job)
    return price(job)


def price(job: Job) -> dict[str, Any]:
    """Price the items of a chunk of the items file; the result holds one line each."""
    items = job.records() if "source" in job.payload else job.payload["items"]
    state = job.state or {"done": 0, "lines": []}
    lines: list[dict[str, Any]] = list(state["lines"])
    shops = suppliers()
    for position in range(int(state["done"]), len(items)):
        item = items[position]
        offers = [ask(url, item["sku"]) for url in shops.values()]
        lines.append(price_line(item, offers))
        job.checkpoint({"done": position + 1, "lines": lines})
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


def price_list(job: Job) -> dict[str, Any]:
    """The reduce: gather every chunk's lines and write the price list into the store."""
    lines: list[dict[str, Any]] = []
    failed = []
    for member, state in job.payload["jobs"]:
        if state == "done":
            lines += job.result_of(job.payload["queue"], member)["lines"]
        else:
            failed.append(member)
    day = (job.created or "")[:10] or "today"
    location = job.write_output(f"pricelist-{day}.csv", write_price_list(lines))
    priced = sum(1 for line in lines if line["status"] == "ok")
    return {"location": location, "lines": len(lines), "priced": priced,
            "unavailable": len(lines) - priced, "failed_jobs": failed}
