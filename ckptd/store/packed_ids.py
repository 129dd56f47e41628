"""Ids held compactly: a sorted run of ids as numpy arrays, not a Python string each.

A daemon that lists ten million pending files must not keep ten million ``str`` objects (about
90 bytes each, plus a set's slots): it keeps each listing as sorted runs of fixed-width keys.

- An id made by :func:`ckptd.core.ids.new_id` this century
  (``20261127T192416.123456Z-9f3ac1d27b8e4a10``) packs into two 64-bit integers, 16 bytes:
  its 18 digits of time after the century as one number (``261127192416123456``), and its
  64 random bits. Keys sort as the ids do, and numpy sorts and searches integers quickly.
- Any other id (``order-43``) is kept as its ASCII bytes in a run of its own, as wide as its
  longest id (sorted and searched as strings: slower, and rarer).

A run is taken from its head (``pos``): what lies before ``pos`` left the run. Its arrays are
never changed in place (a run without some ids is a new run), so another thread may read
them while the loop takes from the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

KEY_BYTES = 16  # of a packed id: its time and its random part
_GENERATED = re.compile(r"20\d{6}T\d{6}\.\d{6}Z-[0-9a-f]{16}")
_NAME = 45  # len("20261127T192416.123456Z-9f3ac1d27b8e4a10.json")
_DIGIT_COLUMNS = [*range(2, 8), *range(9, 15), *range(16, 22)]
_HEX_COLUMNS = list(range(24, 40))
_TEN = (10 ** np.arange(17, -1, -1, dtype=np.uint64)).astype(np.uint64)
_SIXTEEN = (np.uint64(1) << (4 * np.arange(15, -1, -1, dtype=np.uint64))).astype(np.uint64)

Ints = npt.NDArray[np.generic]  # keys' arrays: of uint64 (packed) or bytes (raw)
Strs = Ints


def is_generated(job_id: str) -> bool:
    """True for an id of :func:`ckptd.core.ids.new_id`'s form made this century (it packs)."""
    return _GENERATED.fullmatch(job_id) is not None


def pack(job_id: str) -> tuple[int, int]:
    """The key of a generated id (:func:`is_generated` must hold)."""
    return int(job_id[2:8] + job_id[9:15] + job_id[16:22]), int(job_id[24:], 16)


def unpack(high: int, low: int) -> str:
    """The id of a key."""
    t = f"20{int(high):018d}"
    return f"{t[:8]}T{t[8:14]}.{t[14:20]}Z-{int(low):016x}"


def _empty() -> tuple[Ints, Ints]:
    return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64)


def split_ids(ids: Sequence[str]) -> tuple[tuple[Ints, Ints], list[str]]:
    """The generated ids of ``ids`` as (unsorted) keys, and the others."""
    keys, rest = pack_names([i + ".json" for i in ids])
    return keys, [name[:-5] for name in rest]


def pack_names(names: list[str]) -> tuple[tuple[Ints, Ints], list[str]]:
    """The keys of the file names ``<generated id>.json`` among ``names`` (checked and
    packed column by column in numpy: a tenth of a microsecond a name), and the other
    names, left as they are (names with a priority, ids of other forms, other files)."""
    # The usual chunk: every name of that length. (The joined length alone is not enough:
    # names of other lengths can add up to the same total, and the rows would then straddle
    # names.)
    if set(map(len, names)) <= {_NAME}:
        plain, rest = names, []
    else:
        plain = [n for n in names if len(n) == _NAME]
        rest = [n for n in names if len(n) != _NAME]
    joined = "".join(plain)
    if not plain:
        return _empty(), rest
    raw = joined.encode("utf-8", "surrogateescape")
    if len(raw) != _NAME * len(plain):  # a name that is not ASCII: look at each one
        return _empty(), names
    table = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _NAME)
    digits = table[:, _DIGIT_COLUMNS]
    hexes = table[:, _HEX_COLUMNS]
    ok = ((digits >= 48) & (digits <= 57)).all(axis=1)
    ok &= (((hexes >= 48) & (hexes <= 57)) | ((hexes >= 97) & (hexes <= 102))).all(axis=1)
    for column, char in ((0, "2"), (1, "0"), (8, "T"), (15, "."), (22, "Z"), (23, "-"),
                         (40, "."), (41, "j"), (42, "s"), (43, "o"), (44, "n")):
        ok &= table[:, column] == ord(char)
    nibbles = hexes[ok].astype(np.uint64)
    nibbles = np.where(nibbles <= 57, nibbles - 48, nibbles - 87)
    high = (digits[ok].astype(np.uint64) - np.uint64(48)) @ _TEN
    low = nibbles @ _SIXTEEN
    if not ok.all():
        rest += [plain[int(i)] for i in np.flatnonzero(~ok)]
    return (high.astype(np.uint64), low.astype(np.uint64)), rest


def raw_keys(ids: Sequence[str]) -> Strs:
    """Ids that do not pack, as an (unsorted) array of their ASCII bytes."""
    return np.array([i.encode("ascii") for i in ids], dtype=np.bytes_)


class IdRun:
    """Sorted ids, compact, taken from the head; ``since`` is when they were listed.

    Packed: ``keys`` holds the high halves, ``low`` the low ones. Raw: ``keys`` holds the
    ids' bytes and ``low`` is None.
    """

    __slots__ = ("keys", "low", "pos", "since")

    def __init__(self, keys: Ints | Strs, low: Ints | None, since: float, *,
                 sort: bool = True) -> None:
        if sort and len(keys):
            if low is None:
                keys = np.sort(keys)
            else:
                order = np.argsort(keys)
                keys, low = keys[order], low[order]
                if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
                    order = np.lexsort((low, keys))  # ids of the same microsecond
                    keys, low = keys[order], low[order]
        self.keys = keys
        self.low = low
        self.pos = 0
        self.since = since

    @property
    def packed(self) -> bool:
        return self.low is not None

    @classmethod
    def runs_of(cls, ids: Sequence[str], since: float) -> list[IdRun]:
        """The runs (at most two: packed, raw) that hold ``ids``."""
        (high, low), others = split_ids(ids)
        runs = []
        if len(high):
            runs.append(cls(high, low, since))
        if others:
            runs.append(cls(raw_keys(others), None, since))
        return runs

    @classmethod
    def joined(cls, runs: Sequence[IdRun], packed: bool, since: float = 0.0,
               left_only: bool = False) -> IdRun:
        """One sorted run of the ids of ``runs`` of one kind (``left_only``: those left)."""
        mine = [r for r in runs if r.packed == packed]
        start = (lambda r: r.pos) if left_only else (lambda r: 0)
        if packed:
            high = [r.keys[start(r):] for r in mine]
            low = [r.low[start(r):] for r in mine if r.low is not None]
            if not high:
                return cls(*_empty(), since)
            return cls(np.concatenate(high), np.concatenate(low), since)
        keys = [r.keys[start(r):] for r in mine]
        return cls(np.concatenate(keys) if keys else raw_keys([]), None, since)

    def __len__(self) -> int:
        return len(self.keys) - self.pos

    @property
    def nbytes(self) -> int:
        """Bytes of memory its keys take."""
        return int(self.keys.nbytes) + (int(self.low.nbytes) if self.low is not None else 0)

    def id_at(self, position: int) -> str:
        """The id at ``position`` of the keys (taken or not)."""
        if self.low is not None:
            return unpack(int(self.keys[position]), int(self.low[position]))
        return bytes(self.keys[position]).decode("ascii")

    def head(self) -> str:
        """The first id left (IndexError when none)."""
        if self.pos >= len(self.keys):
            raise IndexError("empty run")
        return self.id_at(self.pos)

    def last(self) -> str:
        """The largest id (IndexError when none)."""
        if self.pos >= len(self.keys):
            raise IndexError("empty run")
        return self.id_at(len(self.keys) - 1)

    def advance(self) -> None:
        """The head left the run."""
        self.pos += 1

    def find(self, job_id: str) -> int:
        """The position of ``job_id`` among the ids left, or -1."""
        if self.packed != (_GENERATED.fullmatch(job_id) is not None):
            return -1
        if self.low is None:
            key = job_id.encode("ascii")
            at = int(self.keys.searchsorted(key))
            found = at < len(self.keys) and bytes(self.keys[at]) == key
            return at if found and at >= self.pos else -1
        return self.find_key(*pack(job_id))

    def find_key(self, high: int, low: int) -> int:
        """The position of a packed id's key among the ids left, or -1."""
        if self.low is None or not len(self.keys) or not (
                int(self.keys[0]) <= high <= int(self.keys[-1])):
            return -1
        at = int(self.keys.searchsorted(np.uint64(high)))
        while at < len(self.keys) and int(self.keys[at]) == high:
            if int(self.low[at]) == low:
                return at if at >= self.pos else -1
            at += 1
        return -1

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self.find(job_id) >= 0

    def __iter__(self) -> Iterator[str]:
        """The ids left, in order."""
        for position in range(self.pos, len(self.keys)):
            yield self.id_at(position)

    def found_in(self, other: IdRun) -> npt.NDArray[np.bool_]:
        """For each of this run's keys (taken or not): is it among ``other``'s (all)?"""
        found = np.zeros(len(self.keys), dtype=bool)
        if other.packed != self.packed or not len(other.keys) or not len(self.keys):
            return found
        at = other.keys.searchsorted(self.keys)
        inside = at < len(other.keys)
        hits = np.zeros(len(self.keys), dtype=bool)
        hits[inside] = other.keys[at[inside]] == self.keys[inside]
        if self.low is None or other.low is None:
            return hits
        ties = np.flatnonzero(hits)
        low_match = other.low[at[ties]] == self.low[ties]
        found[ties[low_match]] = True
        # Several keys of the same microsecond: look through them.
        for position in ties[~low_match]:
            high, low = self.keys[position], self.low[position]
            index = int(at[position]) + 1
            while index < len(other.keys) and other.keys[index] == high:
                if other.low[index] == low:
                    found[position] = True
                    break
                index += 1
        return found

    def without(self, ids: Sequence[str]) -> IdRun:
        """This run without those of ``ids`` it holds (itself when it held none)."""
        if not ids or not len(self):
            return self
        mine = [i for i in ids if self.find(i) >= 0]
        if not mine:
            return self
        drop = [self.find(i) for i in mine]
        keys = np.delete(self.keys, drop)
        low = np.delete(self.low, drop) if self.low is not None else None
        run = IdRun(keys, low, self.since, sort=False)
        run.pos = self.pos - sum(1 for d in drop if d < self.pos)
        return run
