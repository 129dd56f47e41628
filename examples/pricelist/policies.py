"""Our own pricing rules: which offer to take, the margin, rounding, and shipping."""

from __future__ import annotations

import math
from typing import Any

MARGIN = 0.30
MIN_MARGIN_EUR = 2.00
FREE_SHIPPING_FROM = 100.00


def best_offer(offers: list[dict[str, Any]], qty: int) -> dict[str, Any] | None:
    """The cheapest offer that can deliver ``qty``, then the fastest; None if none can."""
    able = [o for o in offers if int(o["available"]) >= qty]
    if not able:
        return None
    return min(able, key=lambda o: (float(o["cost"]), int(o["lead_days"]), str(o["supplier"])))


def sale_price(cost: float) -> float:
    """Cost plus margin (at least MIN_MARGIN_EUR), rounded up to .99."""
    price = max(cost * (1 + MARGIN), cost + MIN_MARGIN_EUR)
    return math.floor(price) + 0.99


def shipping(price: float, weight_kg: float) -> float:
    """Shipping for one unit: free from FREE_SHIPPING_FROM, else 4.90 + 1.20 per kg."""
    if price >= FREE_SHIPPING_FROM:
        return 0.0
    return round(4.90 + 1.20 * weight_kg, 2)


def price_line(item: dict[str, Any], offers: list[dict[str, Any]]) -> dict[str, Any]:
    """One line of the price list for an item, from the suppliers' offers."""
    qty = int(item["qty"])
    offer = best_offer(offers, qty)
    if offer is None:
        return {"sku": item["sku"], "name": item["name"], "status": "unavailable",
                "supplier": "", "cost": "", "price": "", "shipping": "", "lead_days": ""}
    price = sale_price(float(offer["cost"]))
    return {"sku": item["sku"], "name": item["name"], "status": "ok",
            "supplier": offer["supplier"], "cost": f"{float(offer['cost']):.2f}",
            "price": f"{price:.2f}", "shipping": f"{shipping(price, float(item['weight_kg'])):.2f}",
            "lead_days": offer["lead_days"]}
