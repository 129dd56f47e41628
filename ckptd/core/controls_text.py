"""A queue's operator controls in one line, for status and the dashboard.

``PAUSED (reason) · max_running 3 (3 running) · rate 50/s · priorities -5:2 0:120 · unique
payload/forever · keep done 7d, failed 30d``. Pure: from the ``status`` figures of a queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def controls_summary(c: Mapping[str, Any]) -> str:
    """The controls of one queue's status figures ("" when it has none)."""
    parts = []
    paused = c.get("paused")
    if paused:
        parts.append("PAUSED" + (f" ({paused['reason']})" if paused.get("reason") else ""))
    limits = c.get("limits") or {}
    if limits.get("max_running") is not None:
        parts.append(f"max_running {limits['max_running']}"
                     + (f" ({limits['running']} running)" if "running" in limits else ""))
    if limits.get("rate"):
        parts.append(f"rate {limits['rate']}")
    if limits.get("source") not in (None, "config"):
        parts.append("limits from limits.json")
    if limits.get("error"):
        parts.append(f"limits.json ignored: {limits['error']}")
    priorities = c.get("priorities") or {}
    levels = priorities.get("levels") or {}
    if len(levels) > 1 or (levels and "0" not in levels):
        aged = priorities.get("aged", 0)
        parts.append("priorities " + " ".join(f"{k}:{v}" for k, v in levels.items())
                     + (f" ({aged} aged)" if aged else ""))
    unique = c.get("unique")
    if unique:
        hits = f", {unique['hits']} found" if unique.get("hits") else ""
        folded = f", {unique['debounced']} debounced" if unique.get("debounced") else ""
        parts.append(f"unique {unique['by']}/{unique['scope']}{hits}{folded}")
    keys = c.get("keys")
    if keys:
        every = keys.get("every_key") or {}
        bounds = [f"max_running {every['max_running']}" if every.get("max_running") else "",
                  f"rate {every['rate']}" if every.get("rate") else ""]
        shown = ", ".join(b for b in bounds if b)
        parts.append(f"keys {keys.get('count', 0)}" + (" fair" if keys.get("fair") else "")
                     + (f" ({shown} each)" if shown else ""))
    keep = c.get("retention") or {}
    if keep:
        rule = f"keep done {keep.get('keep_done')}, failed {keep.get('keep_failed')}"
        if keep.get("keep_last") is not None:
            rule += f", last {keep['keep_last']}"
        if keep.get("archive"):
            rule += ", archived"
        gone = sum(int(keep.get(k) or 0) for k in ("removed_done", "removed_failed",
                                                    "archived_done", "archived_failed"))
        parts.append(rule + (f" ({gone} swept)" if gone else ""))
    return " · ".join(parts)
