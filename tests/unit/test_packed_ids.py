"""Compact ids: packing keeps every id and its order; runs answer ``in`` and give their ids
in order; the backlog of a queue behaves as the set it replaces; the ready lines take the
listed ids oldest first, ahead of the ids appended after them, priorities first."""

from __future__ import annotations

import os
import random
import string

from hypothesis import example, given
from hypothesis import strategies as st

from ckptd.core.ids import new_id
from ckptd.daemon.controls.backlog import Backlog
from ckptd.daemon.controls.priorities import ReadyLines
from ckptd.store.packed_ids import IdRun, is_generated, pack, split_ids, unpack

generated = st.builds(
    lambda t, r: f"20{t[:6]}T{t[6:12]}.{t[12:18]}Z-{r}",
    st.text(string.digits, min_size=18, max_size=18),
    st.text("0123456789abcdef", min_size=16, max_size=16))
hand_made = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,40}", fullmatch=True).filter(
    lambda i: not is_generated(i))


@given(generated)
def test_a_generated_id_packs_into_two_integers_and_back(job_id: str) -> None:
    assert is_generated(job_id)
    high, low = pack(job_id)
    assert 0 <= high < 2 ** 63 and 0 <= low < 2 ** 64 and unpack(high, low) == job_id


@given(st.lists(generated, min_size=2, max_size=20, unique=True))
def test_packing_keeps_the_order(ids: list[str]) -> None:
    assert sorted(pack(i) for i in ids) == [pack(i) for i in sorted(ids)]
    run = IdRun.runs_of(ids, 0.0)[0]
    assert list(run) == sorted(ids)


@given(st.lists(st.one_of(generated, hand_made), max_size=30, unique=True),
       st.lists(st.one_of(generated, hand_made), max_size=30, unique=True))
def test_found_in_and_without(ids: list[str], others: list[str]) -> None:
    import numpy as np

    for run in IdRun.runs_of(ids, 0.0):
        for other in IdRun.runs_of(others, 0.0):
            found = {run.id_at(int(p)) for p in np.flatnonzero(run.found_in(other))}
            assert found == {i for i in run if i in set(other)}
        smaller = run.without(others)
        assert list(smaller) == [i for i in run if i not in set(others)]


def test_ids_of_the_same_microsecond_keep_their_order() -> None:
    ids = [f"20261127T192416.123456Z-{n:016x}" for n in (9, 0, 2 ** 63, 5)]
    run = IdRun.runs_of(ids, 0.0)[0]
    assert list(run) == sorted(ids) and all(run.find(i) >= 0 for i in ids)
    assert "20261127T192416.123456Z-0000000000000001" not in run


@given(st.lists(st.one_of(generated, hand_made), max_size=60, unique=True),
       st.lists(st.one_of(generated, hand_made), max_size=10))
def test_runs_hold_every_id_in_order(ids: list[str], others: list[str]) -> None:
    runs = IdRun.runs_of(ids, 1.0)
    assert sorted(i for run in runs for i in run) == sorted(ids)
    for run in runs:
        assert list(run) == sorted(run)
    for job_id in ids:
        assert sum(job_id in run for run in runs) == 1
    for job_id in set(others) - set(ids):
        assert not any(job_id in run for run in runs)


def test_split_ids_takes_the_generated_ones_apart() -> None:
    ids = [new_id() for _ in range(5)] + ["order-43", "a.b"]
    (high, low), others = split_ids(ids)
    assert len(high) == 5 and others == ["order-43", "a.b"]
    (high, low), others = split_ids(ids[:5])
    assert sorted(unpack(h, lo) for h, lo in zip(high, low)) == sorted(ids[:5])
    assert others == []


def test_a_taken_id_is_no_longer_in_the_run() -> None:
    ids = sorted(new_id() for _ in range(10))
    run = IdRun.runs_of(ids, 0.0)[0]
    assert run.head() == ids[0]
    run.advance()
    assert ids[0] not in run and ids[1] in run and len(run) == 9 and list(run) == ids[1:]


def test_the_backlog_is_a_set_over_runs_and_loose_ids() -> None:
    listed = sorted(new_id() for _ in range(100))
    backlog = Backlog()
    backlog.add_runs(0, IdRun.runs_of(listed[:50], 0.0))
    backlog.add_runs(0, IdRun.runs_of(listed[50:], 0.0))
    backlog.add("order-1")
    assert len(backlog) == 101 and all(i in backlog for i in listed) and "order-1" in backlog
    backlog.add(listed[3])  # already held by a run: not twice
    assert len(backlog) == 101
    backlog.discard(listed[7])  # out of order: marked gone
    assert listed[7] not in backlog and len(backlog) == 100
    backlog.add(listed[7])  # pending again: in its run's place
    assert listed[7] in backlog and len(backlog) == 101
    backlog.discard(listed[7])
    taken = [backlog.take(0) for _ in range(99)]
    assert taken == [i for i in listed if i != listed[7]]  # in id order, gone one skipped
    assert backlog.take(0) is None
    assert all(i in backlog for i in taken) and len(backlog) == 100  # taken ids are loose
    for job_id in taken:
        backlog.discard(job_id)
    assert set(backlog) == {"order-1"} and len(backlog) == 1


def test_new_ids_outside_what_was_listed_need_no_search() -> None:
    backlog = Backlog()
    backlog.add_runs(0, IdRun.runs_of(sorted(new_id() for _ in range(10)), 0.0))
    later = new_id()
    assert backlog.level_of(later) is None and later not in backlog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ready_lines_take_listed_ids_first_then_appended_ones_by_priority() -> None:
    clock = Clock()
    ready = ReadyLines(clock)
    listed = sorted(new_id() for _ in range(6))
    shuffled = listed[:]
    random.Random(1).shuffle(shuffled)
    ready.add_listed(0, shuffled[:3])  # two chunks, in directory order
    ready.add_listed(0, shuffled[3:])
    ready.add_listed(-5, ["urgent-1", "urgent-2"])
    clock.now += 1
    ready.note("later", 0)
    ready.append("later")
    assert len(ready) == 9 and ready.levels() == {-5: 2, 0: 7}
    assert list(ready) == ["urgent-1", "urgent-2", *listed, "later"]
    order = [ready.popleft() for _ in range(9)]
    assert order == ["urgent-1", "urgent-2", *listed, "later"]
    assert ready.prio.get("urgent-1") == -5  # noted when taken: a retry keeps it


def test_aging_counts_from_when_ids_were_listed() -> None:
    clock = Clock()
    ready = ReadyLines(clock)
    ready.aging = 1.0
    ready.add_listed(5, ["patient"])
    clock.now += 10  # waited ten levels' worth
    ready.note("fresh", 0)
    ready.append("fresh")
    assert ready.popleft() == "patient" and ready.aged == 1


def test_a_run_of_a_million_ids_is_small() -> None:
    ids = [f"20261127T19{i // 1_000_000:04d}.{i % 1_000_000:06d}Z-{os.urandom(8).hex()}"
           for i in range(200_000)]
    runs = IdRun.runs_of(ids, 0.0)
    assert len(runs) == 1 and runs[0].nbytes == 16 * len(ids)


@given(st.lists(st.one_of(generated.map(lambda i: i + ".json"),
                          generated.map(lambda i: i + ",p-3.json"),
                          generated.map(lambda i: i.upper() + ".json"),
                          hand_made.map(lambda i: i + ".json"),
                          st.text(min_size=45, max_size=45)), max_size=40))
@example(["20000000T000000.000000Z-0000000000000000,p-3.json"] * 4
         + ["000000000000000000000000.json", "20000000T000000.000000Z-0000000000000000.json"])
def test_pack_names_packs_the_plain_generated_names(names: list[str]) -> None:
    from ckptd.store.packed_ids import pack_names

    (high, low), rest = pack_names(names)
    plain = [n for n in names if n.endswith(".json") and is_generated(n[:-5])]
    packed = [unpack(h, lo) + ".json" for h, lo in zip(high, low)]
    assert sorted(packed + rest) == sorted(names)  # each name once, packed or left
    assert set(packed) <= set(plain)
    if all(n.isascii() for n in names):
        assert sorted(packed) == sorted(plain)
