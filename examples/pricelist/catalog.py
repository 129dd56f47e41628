"""What the simulated suppliers know: deterministic prices and stock for any SKU.

Every supplier answers the same question the same way every time (only its latency and its
transient failures are random), so a price list can be checked against one computed
independently.
"""

from __future__ import annotations

import hashlib

SUPPLIERS = ("acme", "globex", "initech")


def _unit(*parts: str) -> float:
    """A stable number in [0, 1) from the parts."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def quote(supplier: str, sku: str) -> dict[str, object]:
    """The supplier's offer for one SKU: unit cost, units in stock, days to ship."""
    base = 5 + 195 * _unit("base", sku)
    factor = 0.85 + 0.3 * _unit("factor", supplier, sku)
    stock = int(60 * _unit("stock", supplier, sku)) - 15  # a quarter of offers: none
    return {"supplier": supplier, "sku": sku, "cost": round(base * factor, 2),
            "available": max(0, stock), "lead_days": 1 + int(9 * _unit("lead", supplier, sku))}
