"""Timestamps and durations as people write them.

Job files carry UTC times in ISO 8601 with a ``Z`` (``2026-11-27T19:24:16.123456Z``); settings
and flags take durations such as ``30s``, ``5m``, ``2h``, ``7d`` (or a bare number of
seconds) and sizes such as ``256KiB``.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

from ckptd.core.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*")
_SIZE_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
    "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}
_SIZE = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")


def parse_duration(value: object, what: str = "duration") -> float:
    """Return seconds for ``30s``, ``5m``, ``2h``, ``7d``, ``250ms`` or a plain number.

    Several parts add up (``1h30m``). Raises :class:`ConfigError` on anything else.
    """
    if isinstance(value, bool):
        raise ConfigError(f"invalid {what} {value!r}: expected a duration like 30s, 5m, 2h, 7d")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:  # TOML allows nan and inf
            raise ConfigError(f"invalid {what} {value!r}: must be a finite number, not negative")
        return float(value)
    text = str(value).strip().lower()
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos or not match.group(0).strip():
            break
        total += float(match.group(1)) * _UNITS[match.group(2) or "s"]
        pos = match.end()
    if not text or pos != len(text) or not math.isfinite(total):
        raise ConfigError(f"invalid {what} {value!r}: expected a duration like 30s, 5m, 2h, 7d")
    return total


def format_duration(seconds: float) -> str:
    """Return a short readable form of a duration: ``850ms``, ``12.3s``, ``4m05s``, ``2h10m``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def parse_size(value: str | int, what: str = "size") -> int:
    """Return bytes for ``262144``, ``256KiB``, ``10MiB``, ``1GB``."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid {what} {value!r}: expected a size like 256KiB or 10MiB")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"invalid {what} {value!r}: must not be negative")
        return value
    match = _SIZE.fullmatch(str(value))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ConfigError(f"invalid {what} {value!r}: expected a size like 256KiB or 10MiB")
    return int(match.group(1)) * _SIZE_UNITS[unit]


_last: tuple[int, str] = (-1, "")


def utc_iso(ts: float) -> str:
    """Return a UNIX time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    global _last
    # The nearest microsecond that is not later than ts once read back (parse_iso): a
    # not_before read back later than the time it was set to kept a job that was due (on a
    # fake clock, for good); int(ts * 1e6) made one time in eight a microsecond later.
    seconds = math.floor(ts)
    micro = round((ts - seconds) * 1_000_000)
    if (seconds * 1_000_000 + micro) / 1_000_000 > ts:
        micro -= 1
    last = _last
    if last[0] != seconds:  # formatting the date is the slow part, and it rarely changes
        last = _last = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{last[1]}.{micro:06d}Z"


def parse_iso(text: str) -> float:
    """Return the UNIX time of an ISO 8601 timestamp; naive times are taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def time_or_none(text: object) -> float | None:
    """The UNIX time of an ISO 8601 string, or None for anything else (missing, garbled)."""
    if not isinstance(text, str):
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None
