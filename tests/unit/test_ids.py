"""Generated ids: valid names, sorted by creation, unique across processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime

import pytest

from ckptd.core import ids
from ckptd.core.ids import id_stamp, id_time, is_generated, made_after, new_id
from ckptd.core.names import is_valid_name
from tests.helpers import wait_for

PROCESSES = 4
IDS_PER_PROCESS = 100_000


def _make_ids(path: str, count: int) -> None:
    """Child process: make ids, check they are valid and strictly increasing, save them."""
    made = [new_id() for _ in range(count)]
    for before, after in zip(made, made[1:]):
        if not before < after:
            raise SystemExit(f"not increasing: {before} then {after}")
    bad = [i for i in made if not is_valid_name(i)]
    if bad:
        raise SystemExit(f"invalid ids, e.g. {bad[0]!r}")
    with open(path, "w") as handle:
        handle.write("\n".join(made))


@pytest.mark.slow
def test_ids_are_sorted_and_unique_across_processes(tmp_path: object) -> None:
    context = multiprocessing.get_context("spawn")
    paths = [os.path.join(str(tmp_path), f"ids.{n}") for n in range(PROCESSES)]
    workers = [context.Process(target=_make_ids, args=(p, IDS_PER_PROCESS)) for p in paths]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    everything: list[str] = []
    for path in paths:
        with open(path) as handle:
            made = handle.read().split("\n")
        assert len(made) == IDS_PER_PROCESS
        everything += made
    assert len(set(everything)) == PROCESSES * IDS_PER_PROCESS


@pytest.fixture(autouse=True)
def fresh_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no memory of earlier ids (and leaves none behind it)."""
    monkeypatch.setattr(ids, "_last_us", 0)


def test_id_shape_and_time() -> None:
    job_id = new_id(now=1_795_000_000.25)
    assert is_valid_name(job_id)
    stamp, _, random_part = job_id.partition("-")
    assert len(random_part) == 16 and int(random_part, 16) >= 0
    assert stamp.endswith("Z")
    assert id_time(job_id) == datetime.fromtimestamp(1_795_000_000.25, UTC)


def test_ids_increase_even_when_the_clock_steps_back() -> None:
    first = new_id(now=2_000_000_000.0)
    second = new_id(now=1_000_000_000.0)  # the wall clock jumped back
    third = new_id(now=2_000_000_000.0)  # the same microsecond again
    assert first < second < third
    assert id_time(second) is not None and id_time(second) > id_time(first)  # type: ignore[operator]


def test_ids_made_in_a_tight_loop_are_strictly_increasing() -> None:
    made = [new_id() for _ in range(10_000)]
    assert made == sorted(made) and len(set(made)) == len(made)


def test_id_time_of_a_foreign_id_is_none() -> None:
    assert id_time("order-42") is None
    assert id_time("") is None


def test_made_after_compares_the_time_part_as_text() -> None:
    """What retention's listing uses to skip jobs created after its cutoff."""
    when = 1_795_000_000.5
    job_id = new_id(now=when)
    assert job_id.startswith(id_stamp(when))
    assert made_after(job_id, id_stamp(when - 0.000001))
    assert not made_after(job_id, id_stamp(when))  # the same microsecond: not after
    assert not made_after(job_id, id_stamp(when + 1))
    assert not made_after("order-42", id_stamp(0))  # a foreign id: its time is not known
    assert not made_after("u" + "f" * 32, id_stamp(0))


def test_a_child_forked_while_the_lock_is_held_can_still_make_ids() -> None:
    """Another thread may hold the id lock at the instant of a fork: the child must not hang."""
    read, write = os.pipe()
    with ids._lock:  # stands for a thread of ours that is inside new_id() during the fork
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                os.write(write, new_id().encode())
            finally:
                os._exit(0)
    os.close(write)
    try:
        wait_for(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, timeout=10,
                 message="the forked child to make an id and exit")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    child_id = os.read(read, 100).decode()
    os.close(read)
    assert is_valid_name(child_id)


def test_generated_ids_are_told_from_chosen_ones() -> None:
    assert is_generated(new_id())
    for chosen in ("order-7", "B20261206T084113-0d8a57.000003", new_id() + "x", "aaa"):
        assert not is_generated(chosen), chosen
