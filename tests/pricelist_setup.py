"""The price-list example's pieces for tests: suppliers as processes, items, the expected list.

The expected price list is computed here, independently of examples/pricelist/policies.py,
from the suppliers' catalogue (their deterministic answers) and the pricing rules as the
README of the example states them: cheapest offer that can deliver the quantity (then the
fastest), 30 % margin but at least 2.00, rounded down to the euro plus .99, shipping free
from 100.00 else 4.90 + 1.20 per kg.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.procs import REPO, base_env, free_port

EXAMPLES = os.path.join(REPO, "examples")
sys.path.insert(0, EXAMPLES)

from pricelist.catalog import SUPPLIERS, quote  # noqa: E402


def write_items(path: str, count: int, seed: int = 5) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = [{"sku": f"SKU-{n:06d}", "name": f"part, \"{n % 13}\" model",
             "weight_kg": f"{rng.uniform(0.1, 12):.2f}", "qty": str(rng.choice([1, 2, 5, 20]))}
            for n in range(count)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sku", "name", "weight_kg", "qty"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def expected_price_list(items: list[dict[str, str]]) -> list[dict[str, str]]:
    lines = []
    for item in items:
        qty = int(item["qty"])
        offers = [quote(s, item["sku"]) for s in SUPPLIERS]
        able = [o for o in offers if int(o["available"]) >= qty]  # type: ignore[call-overload]
        if not able:
            lines.append({"sku": item["sku"], "name": item["name"], "status": "unavailable",
                          "supplier": "", "cost": "", "price": "", "shipping": "",
                          "lead_days": ""})
            continue
        able.sort(key=lambda o: (o["cost"], o["lead_days"], o["supplier"]))  # type: ignore
        best = able[0]
        cost = float(best["cost"])  # type: ignore[arg-type]
        price = math.floor(max(cost * 1.3, cost + 2.0)) + 0.99
        ship = 0.0 if price >= 100.0 else round(4.90 + 1.20 * float(item["weight_kg"]), 2)
        lines.append({"sku": item["sku"], "name": item["name"], "status": "ok",
                      "supplier": str(best["supplier"]), "cost": f"{cost:.2f}",
                      "price": f"{price:.2f}", "shipping": f"{ship:.2f}",
                      "lead_days": str(best["lead_days"])})
    return sorted(lines, key=lambda line: line["sku"])


def read_price_list(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def suppliers(tmp_path: Any) -> Iterator[dict[str, str]]:
    """Three simulated suppliers on 127.0.0.1 (fast answers, real 503s and timeouts)."""
    procs = []
    urls = {}
    env = base_env(PYTHONPATH=os.pathsep.join([REPO, EXAMPLES]))
    try:
        for name in SUPPLIERS:
            port = free_port()
            log = open(os.path.join(str(tmp_path), f"supplier-{name}.log"), "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pricelist.suppliers", "--name", name, "--port",
                 str(port), "--latency-ms", "0,3", "--error-rate", "0.05",
                 "--timeout-rate", "0.002"], stdout=log, stderr=subprocess.STDOUT, env=env))
            log.close()
            urls[name] = f"http://127.0.0.1:{port}"
        import time
        import urllib.request

        for url in urls.values():
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"{url}/quote?sku=warmup", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def worker_env(urls: dict[str, str]) -> dict[str, str]:
    """Environment of a price-list worker."""
    return {"PRICELIST_SUPPLIERS": ",".join(f"{n}={u}" for n, u in urls.items()),
            "PYTHONPATH": os.pathsep.join([REPO, EXAMPLES])}
