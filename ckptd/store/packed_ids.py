"""Ids held compactly: a sorted run of ids as one numpy array, not a Python string each.

A daemon that lists ten million pending files must not keep ten million ``str`` objects (about
90 bytes each, plus a set's slots): it keeps each listing as sorted runs of fixed-width keys.

- An id made by :func:`ckptd.core.ids.new_id` (``20261127T192416.123456Z-9f3ac1d27b8e4a10``)
  packs into 18 bytes: its 20 digits of time as 10 bytes of BCD, then its 64 random bits.
  Packing keeps the order: keys sort as the ids do.
- Any other id (``order-43``) is kept as its ASCII bytes in a run of its own, as wide as its
  longest id.

Sorting a run and finding an id in it run in numpy, outside the interpreter's lock. A run
is taken from its head (``pos``): what lies before ``pos`` left the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

KEY_BYTES = 18
_GENERATED = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{16}")
# Every id of a chunk is generated (one regex over the joined chunk instead of one per id).
_ALL_GENERATED = re.compile(r"(?:\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{16}\n)*")
_DROP = str.maketrans("", "", "TZ.-\n")

Keys = npt.NDArray[np.bytes_]


def is_generated(job_id: str) -> bool:
    """True for an id of :func:`ckptd.core.ids.new_id`'s form (it packs)."""
    return _GENERATED.fullmatch(job_id) is not None


def pack(job_id: str) -> bytes:
    """The 18-byte key of a generated id (:func:`is_generated` must hold)."""
    return bytes.fromhex(job_id.translate(_DROP))


def unpack(key: bytes) -> str:
    """The id of an 18-byte key (numpy strips trailing zero bytes: they are put back)."""
    h = key.ljust(KEY_BYTES, b"\0").hex()
    return f"{h[:8]}T{h[8:14]}.{h[14:20]}Z-{h[20:]}"


def split_ids(ids: Sequence[str]) -> tuple[Keys, list[str]]:
    """The generated ids of ``ids`` as an (unsorted) array of keys, and the others."""
    if not ids:
        return np.empty(0, dtype=f"S{KEY_BYTES}"), []
    joined = "\n".join(ids) + "\n"
    if _ALL_GENERATED.fullmatch(joined):  # the usual case: one pass in C for the chunk
        packed = bytes.fromhex(joined.translate(_DROP))
        return np.frombuffer(packed, dtype=f"S{KEY_BYTES}").copy(), []
    generated = [i for i in ids if _GENERATED.fullmatch(i)]
    others = [i for i in ids if not _GENERATED.fullmatch(i)]
    if not generated:
        return np.empty(0, dtype=f"S{KEY_BYTES}"), others
    packed = bytes.fromhex("".join(generated).translate(_DROP))
    return np.frombuffer(packed, dtype=f"S{KEY_BYTES}").copy(), others


_NAME = 45  # len("20261127T192416.123456Z-9f3ac1d27b8e4a10.json")
_DIGIT_COLUMNS = [*range(0, 8), *range(9, 15), *range(16, 22)]
_HEX_COLUMNS = list(range(24, 40))


def pack_names(names: list[str]) -> tuple[Keys, list[str]]:
    """The keys of the file names ``<generated id>.json`` among ``names`` (checked and
    packed column by column in numpy: a tenth of a microsecond a name), and the other
    names, left as they are (names with a priority, ids of other forms, other files)."""
    joined = "".join(names)
    if len(joined) == _NAME * len(names):  # the usual chunk: every name of that length
        plain, rest = names, []
    else:
        plain = [n for n in names if len(n) == _NAME]
        rest = [n for n in names if len(n) != _NAME]
        joined = "".join(plain)
    if not plain:
        return np.empty(0, dtype=f"S{KEY_BYTES}"), rest
    raw = joined.encode("utf-8", "surrogateescape")
    if len(raw) != _NAME * len(plain):  # a name that is not ASCII: look at each one
        return np.empty(0, dtype=f"S{KEY_BYTES}"), names
    table = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _NAME)
    digits = table[:, _DIGIT_COLUMNS]
    hexes = table[:, _HEX_COLUMNS]
    ok = ((digits >= 48) & (digits <= 57)).all(axis=1)
    ok &= (((hexes >= 48) & (hexes <= 57)) | ((hexes >= 97) & (hexes <= 102))).all(axis=1)
    for column, char in ((8, "T"), (15, "."), (22, "Z"), (23, "-"), (40, "."), (41, "j"),
                         (42, "s"), (43, "o"), (44, "n")):
        ok &= table[:, column] == ord(char)
    nibbles = np.concatenate([digits[ok] - 48, hexes[ok]], axis=1)
    nibbles[:, 20:] = np.where(nibbles[:, 20:] <= 57, nibbles[:, 20:] - 48,
                               nibbles[:, 20:] - 87)
    packed = np.ascontiguousarray((nibbles[:, 0::2] << 4) | nibbles[:, 1::2])
    keys = packed.view(f"S{KEY_BYTES}").ravel().copy()
    if not ok.all():
        rest += [plain[int(i)] for i in np.flatnonzero(~ok)]
    return keys, rest


def raw_keys(ids: Sequence[str]) -> Keys:
    """Ids that do not pack, as an (unsorted) array of their ASCII bytes."""
    return np.array([i.encode("ascii") for i in ids], dtype=np.bytes_)


class IdRun:
    """Sorted ids, compact, taken from the head; ``since`` is when they were listed."""

    __slots__ = ("keys", "packed", "pos", "since")

    def __init__(self, keys: Keys, packed: bool, since: float, *, sort: bool = True) -> None:
        self.keys = np.sort(keys) if sort else keys
        self.packed = packed
        self.pos = 0
        self.since = since

    @classmethod
    def runs_of(cls, ids: Sequence[str], since: float) -> list[IdRun]:
        """The runs (at most two: packed, raw) that hold ``ids``."""
        packed, others = split_ids(ids)
        runs = []
        if len(packed):
            runs.append(cls(packed, True, since))
        if others:
            runs.append(cls(raw_keys(others), False, since))
        return runs

    def __len__(self) -> int:
        return len(self.keys) - self.pos

    @property
    def nbytes(self) -> int:
        """Bytes of memory its keys take."""
        return int(self.keys.nbytes)

    def id_at(self, position: int) -> str:
        """The id at ``position`` of the keys (taken or not)."""
        return self._id(position)

    def _id(self, position: int) -> str:
        key = bytes(self.keys[position])
        return unpack(key) if self.packed else key.decode("ascii")

    def head(self) -> str:
        """The first id left (IndexError when none)."""
        if self.pos >= len(self.keys):
            raise IndexError("empty run")
        return self._id(self.pos)

    def last(self) -> str:
        """The largest id (IndexError when none)."""
        if self.pos >= len(self.keys):
            raise IndexError("empty run")
        return self._id(len(self.keys) - 1)

    def advance(self) -> None:
        """The head left the run."""
        self.pos += 1

    def find(self, job_id: str) -> int:
        """The position of ``job_id`` among the ids left, or -1."""
        if self.packed:
            if not _GENERATED.fullmatch(job_id):
                return -1
            key = pack(job_id)
        else:
            if _GENERATED.fullmatch(job_id):
                return -1
            key = job_id.encode("ascii")
        keys = self.keys
        at = int(keys.searchsorted(key))
        if at < self.pos or at >= len(keys):
            return -1
        found = bytes(keys[at])
        return at if found == key.rstrip(b"\0") else -1

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self.find(job_id) >= 0

    def __iter__(self) -> Iterator[str]:
        """The ids left, in order."""
        for position in range(self.pos, len(self.keys)):
            yield self._id(position)

    def remaining(self) -> Keys:
        """The keys left (a view)."""
        return self.keys[self.pos:]
