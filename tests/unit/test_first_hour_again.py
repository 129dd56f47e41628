"""Issue 22, "the first hour, second round": the items whose rules run without processes.

The engine on a fake clock (items 8, 9, 13), explain's sentences (items 8, 11), the store's
own submit-file when it is stopped (item 6), key files (item 14) and the values a submit
takes (item 17). The process-level tests of the issue are in
tests/integration/test_first_hour_again.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ckptd.core.config import Settings
from ckptd.core.errors import AuthError, InvalidInput
from ckptd.core.explain import explain
from ckptd.core.states import State
from ckptd.store.admin import StoreAdmin
from ckptd.store.local.backend import LocalStore
from tests.unit.test_engine import Harness


def _give_back(h: Harness, worker: bytes, job_id: str, attempt: int) -> None:
    h.answer(worker, "failed", {"queue": "q", "id": job_id, "attempt": attempt,
                                "error": "the worker stopped", "type": "GivenBack",
                                "retry": True, "delay": 0.0, "given_back": True})


# -- 8: a job given back runs before newer jobs; explain counts what counts --------------------


def test_a_job_given_back_runs_again_before_the_jobs_that_came_after_it() -> None:
    h = Harness()
    older = h.submit()
    w = h.hello()
    [job] = h.dispatch()
    assert job["id"] == older
    newer = [h.submit() for _ in range(3)]
    _give_back(h, w, older, 1)  # its worker stopped: it frees its slot
    h.tick(0.001)
    [job] = h.dispatch()
    assert job["id"] == older and job["attempt"] == 2, (job, newer)


def test_explain_does_not_count_attempts_given_back() -> None:
    h = Harness(max_attempts=3)
    job_id = h.submit()
    w = h.hello()
    for attempt in (1, 2, 3):  # three workers stopped while it ran
        h.tick(0.001)
        [job] = h.dispatch()
        assert job["attempt"] == attempt
        _give_back(h, w, job_id, attempt)
    text = "\n".join(explain({"state": "pending", "job": h.file(State.PENDING, job_id)},
                             h.now))
    assert "No attempt has run yet; it has 3 attempt(s) (3 more were given back" in text, text
    h.tick(0.001)
    h.dispatch()
    h.answer(w, "failed", {"queue": "q", "id": job_id, "attempt": 4, "error": "boom",
                           "retry": True})
    text = "\n".join(explain({"state": "pending", "job": h.file(State.PENDING, job_id)},
                             h.now))
    assert "It has used 1 of 3 attempts; 2 left (3 more were given back" in text, text


# -- 9: the daemon's counts follow what was done in the store -----------------------------------


def _put_pending(h: Harness, job_id: str, **fields: Any) -> None:
    job = {"id": job_id, "queue": "q", "payload": {}, "created": "2026-01-01T00:00:00Z",
           "attempts": 0, "max_attempts": 3, "rev": 0, **fields}
    h.store.put_new("q", job_id, json.dumps(job).encode())
    h.engine.pending_appeared("q", job_id)


@pytest.mark.xfail(strict=True, reason=(
    "open again since the merge of issue 28: the daemon orders pending jobs from their names "
    "and reads a file only at its claim, so a delayed job put in by --root is counted due "
    "until a worker asks"))
def test_a_delayed_job_put_into_the_store_is_counted_delayed_at_once() -> None:
    from ckptd.core.timefmt import utc_iso

    h = Harness()
    h.engine.index.queue("q")
    _put_pending(h, "later", not_before=utc_iso(h.now + 3600), priority=-5)
    h.engine.tick(h.now)  # no worker connected
    index = h.engine.queues["q"]
    assert len(index.delayed_at) == 1
    assert "later" in index.delayed_at and list(index.ready) == []


def test_a_job_removed_from_the_store_leaves_no_priority_behind() -> None:
    from ckptd.core.timefmt import utc_iso

    h = Harness()
    h.engine.index.queue("q")
    _put_pending(h, "later", not_before=utc_iso(h.now + 3600), priority=-5)
    _put_pending(h, "due", priority=-3)
    h.engine.tick(h.now)
    for job_id in ("later", "due"):  # ckptd --root cancel, while no worker is connected
        h.store.delete("q", State.PENDING, job_id)
    h.engine.pending_vanished("q", "later")
    h.engine.queues["q"].added_since_scan.clear()  # a rescan begins (Scans.start)
    h.engine.reconcile_pending("q", {})  # and lists nothing
    ready = h.engine.queues["q"].ready
    assert ready.prio == {} and ready.levels() == {} and len(ready) == 0


# -- 13: a file mv'd into pending/ starts at once -------------------------------------------------


def test_a_file_moved_into_pending_by_hand_is_claimed_at_once() -> None:
    h = Harness()
    h.engine.index.queue("q")
    h.store.put_new("q", "order-43", json.dumps({"payload": {"sku": "C-3"}}).encode())
    h.engine.pending_appeared("q", "order-43")
    h.hello()
    [job] = h.dispatch()  # the same instant: no grace period for a whole JSON object
    assert job["id"] == "order-43" and job["payload"] == {"sku": "C-3"}


# -- 11: explain after a failed job was moved back by hand --------------------------------------


def test_explain_of_a_failed_job_moved_back_by_hand() -> None:
    h = Harness()
    job_id = h.submit(max_attempts=2)
    w = h.hello()
    for attempt in (1, 2):
        h.tick(120)
        h.dispatch()
        h.answer(w, "failed", {"queue": "q", "id": job_id, "attempt": attempt,
                               "error": "boom", "retry": True})
    failed = h.file(State.FAILED, job_id)
    h.store.move("q", job_id, State.FAILED, State.PENDING)  # mv failed/X.json pending/
    text = "\n".join(explain({"state": "pending", "job": failed}, h.now))
    assert "It has used all 2 of its attempts" in text and "put back into pending/ by hand" \
        in text and "runs once more (attempt 3)" in text, text
    h.engine.pending_appeared("q", job_id)
    h.tick(0.001)
    [job] = h.dispatch()
    assert job["attempt"] == 3
    h.answer(w, "failed", {"queue": "q", "id": job_id, "attempt": 3, "error": "boom",
                           "retry": True})
    text = "\n".join(explain({"state": "failed", "job": h.file(State.FAILED, job_id)}, h.now))
    assert "used all 2 attempts" not in text and "(3 attempts in all)" in text, text


# -- 6: a submit-file stopped before its first job leaves nothing --------------------------------


class _Interrupted(LocalStore):
    """A store whose job creations are interrupted (as by Ctrl-C) after ``after`` jobs."""

    after = 0

    def apply(self, ops: Any) -> Any:
        from ckptd.store.base import PutNew

        jobs = [op for op in ops if isinstance(op, PutNew)]
        if jobs and self.after <= 0:
            raise KeyboardInterrupt
        self.after -= len(jobs)
        return super().apply(ops)


@pytest.mark.parametrize("after", [0, 500])
def test_a_submit_file_stopped_says_what_is_left_and_fsck_finds_it(tmp_path: Path,
                                                                   after: int) -> None:
    store = _Interrupted(str(tmp_path / "data"))
    store.after = after
    admin = StoreAdmin(store, Settings(root=str(tmp_path / "data")))
    data = "".join(f"line {n}\n" for n in range(1200)).encode()
    with pytest.raises(KeyboardInterrupt) as stopped:
        admin.submit_file("lines", data, chunk=1, batch="b1")
    [note] = stopped.value.__notes__
    if after == 0:
        assert note == "no job of batch b1 was made, and nothing is left of it"
        assert store.manifests("lines") == [] and store.blob_ids("lines") == []
        assert admin.fsck() == []
        return
    assert note.startswith("batch b1 has 500 of its 1200 jobs: run the same command again "
                           "with --batch b1")
    [finding] = [f for f in admin.fsck() if f.kind == "incomplete-batch"]
    assert "500 of its 1200 jobs exist" in finding.detail and not finding.repaired
    store.after = 10_000
    assert admin.submit_file("lines", data, chunk=1, batch="b1").created == 700
    assert admin.fsck() == []


# -- 14: a public key given as the secret one ---------------------------------------------------


def test_a_public_key_given_as_the_secret_key_is_named_first(tmp_path: Path) -> None:
    from ckptd.wire.security import keygen, load_key_pair

    public, secret = keygen(str(tmp_path), "vm1")
    os.chmod(public, 0o644)
    with pytest.raises(AuthError, match=f"is a public key; give the secret key, {secret}"):
        load_key_pair(public)


# -- 17: values out of range --------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"delay": -1.0}, {"delay": 1e14}, {"delay": float("nan")},
                                     {"time_limit": 1e-300}, {"time_limit": 0.0}])
def test_a_submit_refuses_values_out_of_range(tmp_path: Path, options: dict[str, float]
                                              ) -> None:
    admin = StoreAdmin(LocalStore(str(tmp_path / "data")), Settings(root=str(tmp_path)))
    with pytest.raises(InvalidInput, match="out of range"):
        admin.submit("q", {}, **options)  # type: ignore[arg-type]
    assert not (tmp_path / "data" / "q").exists()
