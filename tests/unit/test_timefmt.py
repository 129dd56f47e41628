"""Durations, sizes and timestamps as people write them."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptd.core.errors import ConfigError
from ckptd.core.timefmt import format_duration, parse_duration, parse_iso, parse_size, utc_iso


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0),
    ("5m", 300.0),
    ("2h", 7200.0),
    ("7d", 604800.0),
    ("1w", 604800.0),
    ("250ms", 0.25),
    ("1h30m", 5400.0),
    ("1h 30m 15s", 5415.0),
    ("1.5h", 5400.0),
    (" 10 ", 10.0),
    ("10", 10.0),
    ("0", 0.0),
    ("5M", 300.0),
    ("1m30s", 90.0),
    (45, 45.0),
    (2.5, 2.5),
    (0, 0.0),
])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", [
    "", " ", "abc", "-5s", "5x", "s", "1e3", "5 minutes", "m5", "1h-30m", "1..5s",
    "1" * 400 + "s", True, False, -1, -0.5, math.nan, math.inf,
])
def test_parse_duration_refuses(text: str | float) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text, "lease")
    assert "lease" in str(info.value)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0ms"), (0.85, "850ms"), (12.34, "12.3s"), (245.0, "4m05s"), (7800.0, "2h10m"),
    (90000.0, "1d01h"), (-2.0, "-2.0s"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("text", "size"), [
    ("262144", 262144), ("256KiB", 262144), ("256kib", 262144), ("10MiB", 10 * 1024**2),
    ("1GB", 10**9), ("1GiB", 1024**3), ("1 k", 1000), ("1kb", 1000), ("7b", 7), ("0", 0),
    (5, 5), (0, 0),
])
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5MiB", "-1", "10TB", "KiB", "ten", "1 2", True, -1])
def test_parse_size_refuses(text: str | int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(text, "inline_limit")
    assert "inline_limit" in str(info.value)


def test_utc_iso() -> None:
    assert utc_iso(0) == "1970-01-01T00:00:00.000000Z"
    assert utc_iso(1_795_000_000.5) == "2026-11-18T11:06:40.500000Z"
    assert utc_iso(86400 * 365 + 0.000001) == "1971-01-01T00:00:00.000001Z"


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_iso_round_trip(ts: float) -> None:
    text = utc_iso(ts)
    assert text.endswith("Z") and len(text) == 27
    assert abs(parse_iso(text) - ts) <= 2e-6


def test_parse_iso_forms() -> None:
    assert parse_iso("1970-01-01T00:01:00Z") == 60.0
    assert parse_iso("1970-01-01T00:01:00") == 60.0  # naive is UTC
    assert parse_iso("1970-01-01T01:01:00+01:00") == 60.0
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_iso("yesterday")


def test_a_formatted_time_is_never_later_than_the_time() -> None:
    """A due time written into a file and read back must not move later (one in eight did,
    by a microsecond: a delayed job on a fake clock stayed delayed)."""
    rand = random.Random(7)
    for _ in range(20_000):
        ts = 1_796_541_141 + rand.random() * 1_000
        back = parse_iso(utc_iso(ts))
        assert ts - 2e-6 < back <= ts, (ts, utc_iso(ts), back)
