"""The done and failed counts a recovery leaves (daemon/engine/indexing.py): moves the loop
makes while done/ and failed/ are listed are counted once, whether the listing saw them or
not, and whether their callbacks ran before the listing ended or after.

Seen in CI on a bucket: after a restart, status counted 200 jobs done while some were still
in claimed/ (a move the listing saw was counted by the listing and again by its callback).
"""

from __future__ import annotations

from ckptd.core.states import State
from ckptd.daemon.engine.index import QueueIndex
from ckptd.daemon.engine.indexing import ListedEnded, ended_counts
from ckptd.store.packed_ids import IdRun


def _listed(done: list[str], failed: list[str]) -> ListedEnded:
    runs = {State.DONE: IdRun.runs_of(sorted(done), 0.0),
            State.FAILED: IdRun.runs_of(sorted(failed), 0.0)}
    return ListedEnded("q", {State.DONE: len(done), State.FAILED: len(failed)},
                       {State.DONE: [], State.FAILED: []}, [], runs=runs)


def test_each_move_during_the_listing_is_counted_once() -> None:
    index = QueueIndex("q")
    index.ending = {}  # the recovery begins
    old = [f"old{n}" for n in range(5)]  # ended before the daemon started

    # a: moved and counted before the listing reached it (the listing sees it)
    index.moving_to_end("a", State.DONE)
    index.count_end("a", State.DONE)
    # b: moved and counted, after the listing passed its place (not seen)
    index.moving_to_end("b", State.DONE)
    index.count_end("b", State.DONE)
    # c: moved (the listing sees it), its callback comes after the listing ends
    index.moving_to_end("c", State.DONE)
    # d: issued, made after the listing (not seen), callback after
    index.moving_to_end("d", State.DONE)
    # f: failed for good, seen, counted before the end of the listing
    index.moving_to_end("f", State.FAILED)
    index.count_end("f", State.FAILED)

    done, failed = ended_counts(index, _listed([*old, "a", "c"], ["f"]))
    index.done, index.failed = done, failed
    assert (done, failed) == (5 + 3, 1)  # old, a, b, c
    assert index.ending is None

    index.count_end("c", State.DONE)  # the listing counted it
    index.count_end("d", State.DONE)
    index.count_end("e", State.DONE)  # a move after the recovery
    assert (index.done, index.failed) == (5 + 5, 1)  # old, a, b, c, d, e
    assert index.counted == set()


def test_without_a_recovery_every_move_counts() -> None:
    index = QueueIndex("q")
    index.moving_to_end("a", State.DONE)
    index.count_end("a", State.DONE)
    index.count_end("b", State.FAILED)
    assert (index.done, index.failed) == (1, 1)
