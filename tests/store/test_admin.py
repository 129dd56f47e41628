"""Operator actions on a store (no daemon), against every backend: submit ... fsck."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from ckptd.core import jobs
from ckptd.core.config import QueueSettings, Settings
from ckptd.core.errors import FileMissing, InvalidName, JobExists, JobNotFound, TransitionError
from ckptd.core.ids import id_time
from ckptd.core.names import is_valid_name
from ckptd.core.states import State
from ckptd.core.timefmt import utc_iso
from ckptd.store.admin import StoreAdmin, load_payload
from ckptd.store.base import Store
from tests.helpers import wait_for
from tests.store.conftest import Backend

P, C, D, F = State.PENDING, State.CLAIMED, State.DONE, State.FAILED
Q = "price"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def admin(store: Store, settings: Settings, clock: Clock) -> StoreAdmin:
    return StoreAdmin(store, settings, clock=clock)


def read(store: Store, state: State, job_id: str, queue: str = Q) -> dict[str, Any]:
    return jobs.decode(store.read(queue, state, job_id), queue, job_id)


def rewrite(store: Store, job_id: str, src: State, dst: State,
            change: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Move a job as the daemon would: bump rev, apply ``change``, write it into ``dst``."""
    job = read(store, src, job_id)
    if change:
        change(job)
    store.move(Q, job_id, src, dst, jobs.encode(jobs.bump(job)))


def fail(store: Store, job_id: str, attempts: int = 3) -> None:
    """Run a pending job to failed/ with its attempts used up."""
    store.move(Q, job_id, P, C)

    def used_up(job: dict[str, Any]) -> None:
        job["attempts"] = attempts
        job["last_error"] = {"message": "boom"}

    rewrite(store, job_id, C, F, used_up)


# -- submit --------------------------------------------------------------------------------


def test_submit_with_a_generated_id(admin: StoreAdmin, store: Store, clock: Clock) -> None:
    answer = admin.submit(Q, {"sku": "A-1"})
    assert answer.created and answer.state == "pending" and is_valid_name(answer.id)
    job = read(store, P, answer.id)
    assert job["payload"] == {"sku": "A-1"} and job["queue"] == Q
    assert job["attempts"] == 0 and job["max_attempts"] == 3 and job["rev"] == 0
    assert job["created"] == utc_iso(clock.now)
    assert "not_before" not in job
    assert id_time(answer.id) is not None
    second = admin.submit(Q, {"sku": "A-2"})
    assert store.ids(Q, P) == [answer.id, second.id], "generated ids list in FIFO order"


def test_submit_with_own_id_and_if_exists(admin: StoreAdmin, store: Store) -> None:
    assert admin.submit(Q, 1, job_id="order-42").id == "order-42"
    with pytest.raises(JobExists) as info:
        admin.submit(Q, 2, job_id="order-42")
    assert info.value.state == "pending" and "--if-exists=return" in str(info.value)
    again = admin.submit(Q, 2, job_id="order-42", if_exists="return")
    assert (again.id, again.created, again.state) == ("order-42", False, "pending")
    assert read(store, P, "order-42")["payload"] == 1, "the first payload is kept"
    with pytest.raises(ValueError, match="if_exists"):
        admin.submit(Q, 3, job_id="x", if_exists="replace")


@pytest.mark.parametrize("state", [C, D, F])
def test_submit_of_an_id_in_another_state(admin: StoreAdmin, store: Store,
                                          state: State) -> None:
    admin.submit(Q, 1, job_id="order-7")
    store.move(Q, "order-7", P, state)
    with pytest.raises(JobExists) as info:
        admin.submit(Q, 2, job_id="order-7")
    assert info.value.state == state.value
    again = admin.submit(Q, 2, job_id="order-7", if_exists="return")
    assert (again.created, again.state) == (False, state.value)
    assert store.find(Q, "order-7") == [state], "no second copy in pending/"


def test_submit_of_a_large_payload_goes_to_a_blob(admin: StoreAdmin, store: Store) -> None:
    payload = {"rows": ["x" * 100] * 50}  # about 5 KiB, over the 1 KiB inline limit
    answer = admin.submit(Q, payload)
    job = read(store, P, answer.id)
    assert job["payload"] is None
    assert job["payload_ref"] == f"blobs/{answer.id}.payload"
    assert job["payload_size"] == len(jobs.encode_value(payload))
    assert len(store.read(Q, P, answer.id)) < 1024, "the job file stays small"
    assert json.loads(store.read_blob(Q, answer.id, "payload")) == payload
    assert load_payload(store, job) == payload
    small = admin.submit(Q, {"sku": "A"})
    assert load_payload(store, read(store, P, small.id)) == {"sku": "A"}
    assert store.blob_ids(Q) == [(answer.id, "payload")]


def test_submit_with_delay_and_attempts(admin: StoreAdmin, store: Store, clock: Clock,
                                        settings: Settings) -> None:
    job = read(store, P, admin.submit(Q, None, delay=600, max_attempts=7).id)
    assert job["not_before"] == utc_iso(clock.now + 600)
    assert job["max_attempts"] == 7
    other = StoreAdmin(store, Settings(queues={"slow": QueueSettings(max_attempts=9)}))
    assert read(store, P, other.submit("slow", 1).id, "slow")["max_attempts"] == 9
    with pytest.raises(ValueError):
        admin.submit(Q, None, max_attempts=0)
    with pytest.raises(ValueError, match="JSON"):
        admin.submit(Q, {1, 2})


@pytest.mark.parametrize("bad", ["../x", "", "a/b", ".q"])
def test_submit_refuses_bad_names_before_writing(backend: Backend, admin: StoreAdmin,
                                                 bad: str) -> None:
    with pytest.raises(InvalidName):
        admin.submit(bad, 1)
    with pytest.raises(InvalidName):
        admin.submit(Q, 1, job_id=bad)
    assert backend.snapshot() == {}


# -- looking -------------------------------------------------------------------------------


def test_status(admin: StoreAdmin, store: Store) -> None:
    if store.root_exists():
        assert admin.status()["queues"] == {}
    else:  # a mistyped root is said to be missing, not shown as an empty store
        with pytest.raises(FileMissing, match="no store at"):
            admin.status()
    ids = [admin.submit(Q, n).id for n in range(5)]
    admin.submit("mail", 1)
    store.move(Q, ids[0], P, C)
    store.move(Q, ids[1], P, C)
    store.move(Q, ids[1], C, D)
    fail(store, ids[2])
    answer = admin.status()
    assert set(answer["queues"]) == {Q, "mail"}
    counts = answer["queues"][Q]
    assert {k: counts[k] for k in ("pending", "claimed", "done", "failed")} == {
        "pending": 2, "claimed": 1, "done": 1, "failed": 1}
    assert answer["queues"]["mail"]["pending"] == 1
    controls = ("paused", "limits", "retention", "unique", "priorities", "keys")  # theirs
    assert all(isinstance(v, int) for q in answer["queues"].values() for k, v in q.items()
               if k != "batches" and k not in controls)
    assert counts["paused"] is None and counts["unique"] is None and counts["keys"] is None
    assert answer["queues"][Q]["batches"] == {}
    only = admin.status("mail")
    assert list(only["queues"]) == ["mail"]
    with pytest.raises(JobNotFound):
        admin.status("nosuch")
    json.dumps(answer)  # what --json prints


def test_ls(admin: StoreAdmin, store: Store) -> None:
    ids = [admin.submit(Q, n).id for n in range(4)]
    store.move(Q, ids[1], P, C)
    fail(store, ids[3])
    assert admin.ls(Q) == [(P, ids[0]), (P, ids[2]), (C, ids[1]), (F, ids[3])]
    assert admin.ls(Q, P) == [(P, ids[0]), (P, ids[2])]
    assert admin.ls(Q, D) == []
    with pytest.raises(JobNotFound, match="no queue 'nosuch'"):  # as status says it
        admin.ls("nosuch")


def test_show(backend: Backend, admin: StoreAdmin, store: Store) -> None:
    job_id = admin.submit(Q, {"sku": "A"}).id
    store.put_checkpoint(Q, job_id, b'{"rows": 10}')
    info = admin.show(Q, job_id)
    assert info["state"] == "pending"
    assert info["path"].endswith(f"/{Q}/pending/{job_id}.json")
    assert info["job"]["payload"] == {"sku": "A"}
    assert info["checkpoint"] == {"rows": 10}
    assert "also_in" not in info
    backend.put(f"{Q}/claimed/{job_id}.json", store.read(Q, P, job_id))
    assert admin.show(Q, job_id)["also_in"] == ["pending"]
    with pytest.raises(JobNotFound):
        admin.show(Q, "nosuch")
    backend.put(f"{Q}/failed/broken.json", b"{oops")
    shown = admin.show(Q, "broken")
    assert "not valid JSON" in shown["job"]["unreadable"] and shown["job"]["raw"] == "{oops"


# -- repairing -----------------------------------------------------------------------------


def test_retry(admin: StoreAdmin, store: Store) -> None:
    job_id = admin.submit(Q, 1).id
    fail(store, job_id, attempts=3)
    before = read(store, F, job_id)
    assert admin.retry(Q, [job_id]) == [job_id]
    job = read(store, P, job_id)
    assert job["attempts"] == 3, "attempts are never reset: they are the fencing token"
    assert job["max_attempts"] == 3 + 3
    assert job["rev"] == before["rev"] + 1
    assert job["last_error"] == {"message": "boom"}
    assert store.find(Q, job_id) == [P]
    fail(store, job_id, attempts=5)
    admin.retry(Q, [job_id], attempts=1)
    job = read(store, P, job_id)
    assert (job["attempts"], job["max_attempts"]) == (5, 6)


def test_retry_all_and_refusals(admin: StoreAdmin, store: Store) -> None:
    ids = [admin.submit(Q, n).id for n in range(3)]
    fail(store, ids[0])
    fail(store, ids[2])
    assert sorted(admin.retry(Q)) == sorted([ids[0], ids[2]])
    assert store.ids(Q, F) == [] and store.count(Q, P) == 3
    assert admin.retry(Q) == []
    with pytest.raises(TransitionError, match="it is pending .* only failed jobs can be"):
        admin.retry(Q, [ids[1]])
    with pytest.raises(JobNotFound, match="no such job"):
        admin.retry(Q, ["nosuch"])


def test_retry_keeps_not_before_out(admin: StoreAdmin, store: Store) -> None:
    job_id = admin.submit(Q, 1, delay=3600).id
    fail(store, job_id)
    admin.retry(Q, [job_id])
    assert "not_before" not in read(store, P, job_id), "a retried job may run at once"


def test_cancel(admin: StoreAdmin, store: Store) -> None:
    pending = admin.submit(Q, {"rows": ["x" * 100] * 50}).id  # with a payload blob
    assert admin.cancel(Q, pending) == "pending"
    assert store.find(Q, pending) == [] and store.blob_ids(Q) == []
    claimed = admin.submit(Q, 1).id
    store.move(Q, claimed, P, C)
    rev = read(store, C, claimed)["rev"]
    assert admin.cancel(Q, claimed) == "claimed"
    job = read(store, F, claimed)
    assert job["last_error"]["type"] == "Cancelled" and job["last_error"]["attempt"] == 1
    assert job["rev"] == rev + 1
    done = admin.submit(Q, 1).id
    store.move(Q, done, P, C)
    store.move(Q, done, C, D)
    for job_id, state in ((done, "done"), (claimed, "failed")):
        with pytest.raises(TransitionError, match=f"already {state}"):
            admin.cancel(Q, job_id)
    assert store.find(Q, done) == [D]
    with pytest.raises(JobNotFound):
        admin.cancel(Q, "nosuch")


def test_purge(admin: StoreAdmin, store: Store, clock: Clock) -> None:
    ids = [admin.submit(Q, n).id for n in range(4)]
    for job_id in ids[:3]:
        store.move(Q, job_id, P, C)
        store.move(Q, job_id, C, D)
        store.put_checkpoint(Q, job_id, b"{}")
        store.put_blob(Q, job_id, "result", b"{}")
    fail(store, ids[3])
    clock.now += 3600
    assert admin.purge(Q, D, older_than=7200) == 0
    assert store.count(Q, D) == 3
    assert admin.purge(Q, D, older_than=1800) == 3
    assert store.count(Q, D) == 0
    assert store.checkpoint_ids(Q) == [] and store.blob_ids(Q) == []
    assert store.ids(Q, F) == [ids[3]], "purging done/ leaves failed/ alone"
    assert admin.purge(Q, F) == 1 and store.count(Q, F) == 0
    for state in (P, C):
        with pytest.raises(TransitionError):
            admin.purge(Q, state)


def test_purge_goes_a_slice_at_a_time_and_counts_every_one(admin: StoreAdmin,
                                                            store: Store) -> None:
    from ckptd.store.plans import PURGE_SLICE

    count = PURGE_SLICE + 3  # one slice and a bit: a group each, as a daemon's turns
    for _ in range(count):
        job_id = admin.submit(Q, 1).id
        store.move(Q, job_id, P, C)
        store.move(Q, job_id, C, D)
    assert admin.purge(Q, D) == count and store.count(Q, D) == 0


def test_purge_older_than_tells_jobs_apart(backend: Backend, admin: StoreAdmin, store: Store,
                                           clock: Clock) -> None:
    old = admin.submit(Q, 1).id
    store.move(Q, old, P, C)
    store.move(Q, old, C, D)
    first = store.mtime(Q, D, old)
    # Wait (on the real clock) until a new file's time must differ from the first one's;
    # object stores keep whole seconds.
    resolution = 0.2 if backend.name.startswith(("local", "memory")) else 1.1
    wait_for(lambda: time.time() > first + resolution, timeout=5)
    new = admin.submit(Q, 2).id
    store.move(Q, new, P, C)
    store.move(Q, new, C, D)
    second = store.mtime(Q, D, new)
    assert second > first
    clock.now = second + 1
    assert admin.purge(Q, D, older_than=1 + (second - first) / 2) == 1
    assert store.ids(Q, D) == [new]


# -- fsck ----------------------------------------------------------------------------------


def kinds(findings: list[Any]) -> list[tuple[str, str, bool]]:
    return sorted((f.kind, f.subject, f.repaired) for f in findings)


def test_fsck_of_a_healthy_store_finds_nothing(admin: StoreAdmin, store: Store) -> None:
    if store.root_exists():
        assert admin.fsck() == []
    else:
        with pytest.raises(FileMissing):  # a mistyped root is not a healthy store
            admin.fsck()
    ids = [admin.submit(Q, n).id for n in range(3)]
    big = admin.submit(Q, {"rows": ["x" * 100] * 50}).id
    store.move(Q, ids[0], P, C)
    store.put_checkpoint(Q, ids[0], b"{}")
    store.move(Q, ids[1], P, C)
    store.move(Q, ids[1], C, D)
    fail(store, ids[2])
    assert admin.fsck(repair=True) == []
    assert store.find(Q, big) == [P]


@pytest.mark.parametrize(("states", "keep", "bump_in"), [
    ((P, C), C, None),  # a bucket's copy-then-delete of a claim
    ((C, P), P, P),  # a release that rewrote into pending
    ((C, D), D, D),
    ((F, P), P, P),  # an operator's retry
    ((D, F), D, None),  # copied by hand: the later state wins
])
def test_fsck_resolves_a_job_in_two_states(backend: Backend, admin: StoreAdmin,
                                           store: Store, states: tuple[State, State],
                                           keep: State, bump_in: State | None) -> None:
    job_id = admin.submit(Q, {"rows": ["x" * 100] * 50}).id  # with a blob to keep
    store.put_checkpoint(Q, job_id, b'{"at": 5}')
    first, second = states
    if first is not P:
        store.move(Q, job_id, P, first)
    job = read(store, first, job_id)
    if bump_in is second:
        jobs.bump(job)
    backend.put(f"{Q}/{second.value}/{job_id}.json", jobs.encode(job))
    other = admin.submit(Q, 1).id
    findings = admin.fsck(repair=False)
    assert kinds(findings) == [("duplicate", job_id, False)]
    assert sorted(store.find(Q, job_id)) == sorted(states), "report only changes nothing"
    findings = admin.fsck(repair=True)
    assert kinds(findings) == [("duplicate", job_id, True)]
    assert f"keep {keep.value}" in findings[0].detail
    assert store.find(Q, job_id) == [keep]
    assert store.read_checkpoint(Q, job_id) == b'{"at": 5}', "the winner keeps its checkpoint"
    assert store.blob_ids(Q) == [(job_id, "payload")], "... and its payload"
    assert store.find(Q, other) == [P]
    assert admin.fsck(repair=True) == []


def test_fsck_quarantines_malformed_json_and_leaves_the_rest(backend: Backend,
                                                             admin: StoreAdmin,
                                                             store: Store) -> None:
    good = [admin.submit(Q, n).id for n in range(3)]
    backend.put(f"{Q}/pending/broken.json", b'{"id": "broken", "queue": ')
    backend.put(f"{Q}/blobs/broken.payload", b"[1, 2, 3]")
    backend.put(f"{Q}/state/broken.json", b'{"at": 3}')
    backend.put(f"{Q}/claimed/wrongq.json", jobs.encode(
        jobs.new_job("mail", "wrongq", 1, 0.0, max_attempts=1)))
    before = {i: store.read(Q, P, i) for i in good}
    findings = admin.fsck(repair=False)
    assert kinds(findings) == [("malformed", "claimed/wrongq.json", False),
                               ("malformed", "pending/broken.json", False)]
    assert store.ids(Q, P) == sorted(good + ["broken"])
    findings = admin.fsck(repair=True)
    assert kinds(findings) == [("malformed", "claimed/wrongq.json", True),
                               ("malformed", "pending/broken.json", True)]
    assert store.ids(Q, P) == good and store.ids(Q, C) == []
    assert store.quarantined(Q) == ["broken.json", "wrongq.json"]
    reason = backend.get(f"{Q}/quarantine/broken.json.reason.txt").decode()
    assert "pending/broken.json is malformed: not valid JSON" in reason
    assert "mail" in backend.get(f"{Q}/quarantine/wrongq.json.reason.txt").decode()
    assert {i: store.read(Q, P, i) for i in good} == before, "other jobs untouched"
    # A quarantined job may be mended and put back: its payload and checkpoint stay.
    assert store.read_blob(Q, "broken", "payload") == b"[1, 2, 3]"
    assert store.read_checkpoint(Q, "broken") == b'{"at": 3}'
    assert admin.fsck(repair=True) == []


def test_fsck_quarantines_foreign_files(backend: Backend, admin: StoreAdmin,
                                        store: Store) -> None:
    job_id = admin.submit(Q, 1).id
    backend.put(f"{Q}/pending/notes.txt", b"remember the milk")
    backend.put(f"{Q}/done/.job.json.swp", b"vim")
    findings = admin.fsck(repair=True)
    assert kinds(findings) == [("foreign", "done/.job.json.swp", True),
                               ("foreign", "pending/notes.txt", True)]
    assert store.foreign(Q) == []
    assert store.quarantined(Q) == [".job.json.swp", "notes.txt"]
    assert backend.get(f"{Q}/quarantine/notes.txt") == b"remember the milk"
    assert "not a job file" in backend.get(f"{Q}/quarantine/notes.txt.reason.txt").decode()
    assert store.ids(Q, P) == [job_id]


def test_fsck_removes_stale_leftovers_only(backend: Backend, admin: StoreAdmin, store: Store,
                                           clock: Clock, settings: Settings) -> None:
    admin.submit(Q, 1)
    backend.put(f"{Q}/tmp/x.123.0", b"half a job")
    clock.now = time.time() + settings.tmp_max_age / 2
    assert admin.fsck(repair=True) == [], "a young file may still be in flight"
    assert [f.name for f in store.leftovers(Q, clock.now)] == ["x.123.0"]
    clock.now = time.time() + settings.tmp_max_age + 60
    assert kinds(admin.fsck(repair=False)) == [("leftover", "tmp/x.123.0", False)]
    assert kinds(admin.fsck(repair=True)) == [("leftover", "tmp/x.123.0", True)]
    assert store.leftovers(Q, clock.now) == []
    assert store.count(Q, P) == 1


def test_fsck_removes_orphan_checkpoints_and_blobs(admin: StoreAdmin, store: Store) -> None:
    live = admin.submit(Q, 1).id
    done = admin.submit(Q, 2).id
    store.move(Q, done, P, C)
    store.move(Q, done, C, D)
    for job_id in (live, done, "ghost"):
        store.put_checkpoint(Q, job_id, b"{}")
    store.put_blob(Q, done, "result", b"{}")
    store.put_blob(Q, "ghost", "payload", b"{}")
    store.put_blob(Q, "ghost", "result", b"{}")
    findings = admin.fsck(repair=True)
    assert kinds(findings) == [("orphan-blob", "blobs/ghost.payload", True),
                               ("orphan-blob", "blobs/ghost.result", True),
                               ("orphan-checkpoint", "state/ghost.json", True)]
    assert store.checkpoint_ids(Q) == sorted([live, done])
    assert store.blob_ids(Q) == [(done, "result")]
    assert store.find(Q, live) == [P] and store.find(Q, done) == [D]


def test_fsck_reports_a_missing_payload_blob(backend: Backend, admin: StoreAdmin,
                                             store: Store) -> None:
    job_id = admin.submit(Q, {"rows": ["x" * 100] * 50}).id
    backend.remove(f"{Q}/blobs/{job_id}.payload")
    findings = admin.fsck(repair=True)
    assert kinds(findings) == [("missing-blob", f"pending/{job_id}.json", False)]


def test_fsck_report_only_changes_nothing(backend: Backend, admin: StoreAdmin,
                                          store: Store, clock: Clock) -> None:
    job_id = admin.submit(Q, 1).id
    backend.put(f"{Q}/claimed/{job_id}.json", store.read(Q, P, job_id))
    backend.put(f"{Q}/pending/broken.json", b"{")
    backend.put(f"{Q}/pending/notes.txt", b"")
    backend.put(f"{Q}/tmp/x.1.1", b"")
    store.put_checkpoint(Q, "ghost", b"{}")
    clock.now += 86400
    before = backend.snapshot()
    findings = admin.fsck(repair=False)
    assert len(findings) == 5 and not any(f.repaired for f in findings)
    assert backend.snapshot() == before
    assert all(f.line().startswith("found") for f in findings)
    repaired = admin.fsck(repair=True)
    assert len(repaired) == 5 and all(f.repaired for f in repaired)
    assert admin.fsck(repair=True) == []


def test_store_commands_take_names_with_a_priority(backend: Backend, admin: StoreAdmin,
                                                    store: Store) -> None:
    urgent = admin.submit(Q, {"n": 1}, priority=-5).id
    plain = admin.submit(Q, {"n": 2}).id
    assert backend.exists(f"{Q}/pending/{urgent},p-5.json")
    assert admin.ls(Q, P) == [(P, urgent), (P, plain)]  # from the names, in dispatch order
    shown = admin.show(Q, urgent)
    assert shown["state"] == "pending" and shown["priority"] == -5
    assert shown["path"].endswith(f"/pending/{urgent},p-5.json")
    assert admin.fsck() == []
    assert admin.cancel(Q, urgent) == "pending"
    assert store.ids(Q, P) == [plain]
    backend.put(f"{Q}/failed/late.json", json.dumps(
        jobs.new_job(Q, "late", {"n": 3}, time.time(), max_attempts=1, priority=4)).encode())
    assert admin.retry(Q, ["late"]) == ["late"]  # back to pending under its priority
    assert backend.exists(f"{Q}/pending/late,p4.json")


def test_fsck_keeps_one_name_of_a_job_and_says_which_priority_counts(
        backend: Backend, admin: StoreAdmin, store: Store) -> None:
    job = jobs.new_job(Q, "twice", {"n": 1}, time.time(), max_attempts=3)
    backend.put(f"{Q}/pending/twice.json", json.dumps(job).encode())
    backend.put(f"{Q}/pending/twice,p-2.json", json.dumps({**job, "rev": 1}).encode())
    old = jobs.new_job(Q, "old", {"n": 2}, time.time(), max_attempts=3, priority=-4)
    backend.put(f"{Q}/pending/old.json", json.dumps(old).encode())  # a previous version's
    found = {(f.kind, f.subject): f for f in admin.fsck(repair=True)}
    assert found[("duplicate", "twice")].repaired
    assert "keep twice,p-2.json" in found[("duplicate", "twice")].detail
    assert sorted(store.pending_names(Q)) == ["old.json", "twice,p-2.json"]
    note = found[("priority-name", "pending/old.json")]
    assert not note.repaired and "pending/old,p-4.json" in note.detail
