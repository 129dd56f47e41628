"""Listing a folder of a million objects: split across key ranges, pages in parallel.

S3 lists 1,000 keys a request, one page after the other: a million pending jobs are a
thousand requests in a row, 20 s at 20 ms each. Here the keys after a full page are split
into :data:`WIDTH` ranges between its last key and the end of its range (by the keys'
characters, so ids that share a prefix, as ids made in the same hour do, are split on the
characters where they differ), each range is listed at once, and a range whose page is full
again is split again. The requests in flight are bounded by the store's concurrency, and
each page is handed over as it arrives: the daemon dispatches from the first ones while
the rest is listed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator

from ckptd.store.s3.requests import S3Requests

WIDTH = 16  # ranges the rest of a full page's range is split into
# Keys of job files use "+" to "{" but never "/": a split key must not hold one either (a
# "/" is a folder's end to S3, and obstore refuses a key with an empty segment, "//").
_ALPHABET = "".join(chr(c) for c in range(0x2B, 0x7C) if chr(c) != "/")
_BASE = len(_ALPHABET) + 1  # digit 0 means "the name ended"
_DIGITS = 12


def _number(key: str, start: int) -> int:
    value = 0
    for position in range(start, start + _DIGITS):
        # a character's digit: how many of the alphabet are at most it (in order, and a
        # character outside the alphabet falls next to its neighbours)
        digit = bisect_right(_ALPHABET, key[position]) if position < len(key) else 0
        value = value * _BASE + digit
    return value


def _key(prefix: str, value: int) -> str:
    digits = []
    for _ in range(_DIGITS):
        value, digit = divmod(value, _BASE)
        digits.append(digit)
    digits.reverse()
    while digits and digits[-1] == 0:
        digits.pop()
    return prefix + "".join(_ALPHABET[max(0, d - 1)] for d in digits)


def split_points(low: str, high: str | None, parts: int) -> list[str]:
    """Up to ``parts - 1`` keys strictly between ``low`` and ``high`` (None: no end), in
    order, about evenly spaced by the characters where the two differ."""
    common = 0
    if high is not None:
        while common < min(len(low), len(high)) and low[common] == high[common]:
            common += 1
    a = _number(low, common)
    b = _number(high, common) if high is not None else _BASE ** _DIGITS - 1
    points: list[str] = []
    for i in range(1, parts):
        point = _key(low[:common], a + (b - a) * i // parts)
        if point > low and (high is None or point < high) and "/" not in point \
                and (not points or point > points[-1]):
            points.append(point)
    return points


async def list_split(req: S3Requests, path: str, on_page: Callable[[list[str]], None],
                     width: int = WIDTH) -> None:
    """List the names below ``path/`` (recursively), calling ``on_page`` with each page's
    names as they come, in ranges listed in parallel (see the module docstring)."""

    async def one(low: str | None, high: str | None) -> None:
        entries, more = await req.list_page(path, low)
        names = [e.name for e in entries]
        inside = [n for n in names if high is None or n <= high]
        if inside:
            on_page(inside)
        if not more or len(inside) < len(names) or not inside:
            return
        bounds: list[str | None] = [inside[-1], *split_points(inside[-1], high, width), high]
        await asyncio.gather(*(one(a, b) for a, b in zip(bounds, bounds[1:])))

    await one(None, None)


def listing_chunks(req: S3Requests, path: str, size: int) -> Iterator[list[str]]:
    """The names below ``path/`` (not deeper), as :func:`list_split` finds them: each chunk
    is what arrived since the last one, at most ``size`` names. Raises what the listing
    raised."""
    pages: queue.Queue[list[str] | BaseException | None] = queue.Queue()

    def run() -> None:
        try:
            req.run(list_split, req, path, pages.put)
            pages.put(None)
        except BaseException as exc:  # handed to the reader, who raises it
            pages.put(exc)

    thread = threading.Thread(target=run, name="ckptd-split-listing", daemon=True)
    thread.start()
    ended = False
    while not ended:
        chunk: list[str] = []
        item = pages.get()
        while True:
            if item is None:
                ended = True
                break
            if isinstance(item, BaseException):
                raise item
            chunk += [name for name in item if "/" not in name]
            if len(chunk) >= size:
                break
            try:
                item = pages.get_nowait()
            except queue.Empty:
                break
        for start in range(0, len(chunk), size):
            yield chunk[start:start + size]
    thread.join()
