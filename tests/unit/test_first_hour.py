"""Issue 13, "the first hour": the parts that need no process. Job files written by hand,
the heartbeat derived from the lease, the store facts doctor reports, batches the daemon
knows before any of their jobs ends, and what is said to a worker that left."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ckptd.client.doctor import NOTE, OK, PROBLEM, WARNING, _clock, check_lease, check_store
from ckptd.core import jobs
from ckptd.core.config import Settings, load_settings
from ckptd.core.errors import ConfigError, MalformedJob
from ckptd.core.states import State
from ckptd.store.admin import StoreAdmin
from ckptd.store.local.backend import LocalStore
from ckptd.store.local.filesystem import filesystem_of, has_journal, parse_mountinfo
from ckptd.wire.endpoints import connect_endpoints
from tests.harness import Harness, worker_message

# -- item 14: a job file needs only what cannot be defaulted --------------------------------


@pytest.mark.parametrize(("text", "payload", "max_attempts"), [
    ('{"id": "order-7", "queue": "price", "payload": {"sku": "A"}}', {"sku": "A"}, 3),
    ('{"payload": [1, 2], "max_attempts": 5}', [1, 2], 5),
    ('{"sku": "A", "qty": 3}', {"sku": "A", "qty": 3}, 3),
    ('"just text"', "just text", 3),
    ("42", 42, 3),
    ("null", None, 3),
])
def test_a_pending_file_written_by_hand_is_completed(text: str, payload: object,
                                                     max_attempts: int) -> None:
    job, completed = jobs.decode_pending(text.encode(), "price", "order-7", written=1.5e9,
                                         max_attempts=3)
    assert completed
    assert job["id"] == "order-7" and job["queue"] == "price" and job["payload"] == payload
    assert job["attempts"] == 0 and job["max_attempts"] == max_attempts
    assert job["created"].startswith("2017-07-14T")  # the time the file was written
    assert jobs.decode(jobs.encode(job), "price", "order-7") == job  # now a full job file


def test_a_full_job_file_is_not_completed() -> None:
    full = jobs.new_job("price", "a", {"x": 1}, 1e9, max_attempts=3)
    assert jobs.decode_pending(jobs.encode(full), "price", "a", written=2e9,
                               max_attempts=7) == (full, False)


@pytest.mark.parametrize(("text", "reason"), [
    ("{not json", "not valid JSON"),
    ('{"payload": 1, "attempts": "two"}', "'attempts' must be"),
    ('{"payload": 1, "id": "other"}', "file name says id"),
    ('{"payload": 1, "queue": "ship"}', "found in queue"),
    ('{"id": "a", "queue": "price", "created": "x", "attempts": 0, "max_attempts": 3}',
     "payload"),
])
def test_what_cannot_be_a_job_stays_malformed(text: str, reason: str) -> None:
    with pytest.raises(MalformedJob, match=reason):
        jobs.decode_pending(text.encode(), "price", "a", written=1e9, max_attempts=3)


def _hand_written(h: Harness, job_id: str, text: str) -> None:
    h.store.put_new("q", job_id, text.encode())  # the bytes as a producer wrote them
    h.engine.pending_appeared("q", job_id)


def test_the_daemon_claims_a_hand_written_file_as_the_full_job(harness: Harness) -> None:
    h = harness
    h.now = time.time() + 60  # the file is older than the grace for files still being written
    _hand_written(h, "order-7", '{"sku": "A"}')
    h.hello(slots=1)
    [body] = h.dispatch()
    assert body["id"] == "order-7" and body["payload"] == {"sku": "A"} and body["attempt"] == 1
    claimed = jobs.decode(h.store.read("q", State.CLAIMED, "order-7"), "q", "order-7")
    assert claimed["payload"] == {"sku": "A"} and claimed["max_attempts"] == 3
    assert h.engine.queues["q"].counters["quarantined"] == 0


def test_a_hand_written_file_seconds_old_waits_for_the_grace(harness: Harness) -> None:
    h = harness
    h.now = time.time()
    _hand_written(h, "order-8", "12")  # a number may be a file still being written
    h.hello(slots=1)
    assert h.dispatch() == []
    assert "order-8" in h.engine.queues["q"].pending
    h.now += 5
    h.engine.index.promote_delayed(h.now)
    [body] = h.dispatch()
    assert body["payload"] == 12


def test_fsck_repair_completes_hand_written_files_and_quarantines_only_the_rest(
        tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "data"))
    admin = StoreAdmin(store, Settings(max_attempts=4))
    admin.submit("price", {"sku": "A"})
    pending = tmp_path / "data/price/pending"
    (pending / "order-9.json").write_text('{"payload": {"sku": "B"}}')
    (pending / "broken.json").write_text("{")
    assert [f.kind for f in admin.fsck()] == ["malformed"]  # the hand-written file is fine
    info = admin.show("price", "order-9")
    assert info["hand_written"] and info["job"]["payload"] == {"sku": "B"}
    findings = admin.fsck(repair=True)
    assert sorted((f.kind, f.repaired) for f in findings) == [("hand-written", True),
                                                              ("malformed", True)]
    job = json.loads((pending / "order-9.json").read_text())
    assert job["id"] == "order-9" and job["max_attempts"] == 4 and job["attempts"] == 0
    assert (tmp_path / "data/price/quarantine/broken.json").exists()
    assert admin.fsck() == []


# -- item 10: the heartbeat follows the lease -------------------------------------------------


def test_the_heartbeat_is_derived_from_the_shortest_lease_unless_set(tmp_path: Path) -> None:
    assert load_settings(env={}).heartbeat == 5.0
    short = load_settings(env={"CKPTD_LEASE": "2s"})
    assert short.heartbeat == pytest.approx(2 / 3) and short.heartbeat_derived
    config = tmp_path / "c.toml"
    config.write_text('[queues.fast]\nlease = "900ms"\n')
    assert load_settings(str(config), env={}).heartbeat == pytest.approx(0.3)
    explicit = load_settings(env={"CKPTD_LEASE": "2s", "CKPTD_HEARTBEAT": "1s"})
    assert explicit.heartbeat == 1.0 and not explicit.heartbeat_derived


def test_a_heartbeat_too_long_for_the_lease_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"CKPTD_LEASE": "2s", "CKPTD_HEARTBEAT": "5s"})
    message = str(caught.value)
    assert "CKPTD_HEARTBEAT=0.667s" in message and "leave heartbeat unset" in message


# -- item 15: batches the daemon has not seen end yet ---------------------------------------


def test_a_batch_submitted_on_the_store_is_known_before_any_job_ends(harness: Harness) -> None:
    h = harness
    admin = StoreAdmin(h.store, h.settings, clock=lambda: h.now)
    batch = admin.submit_file("q", b"a\nb\nc\n", fmt="lines", chunk=1, then="sum").batch
    for job_id in h.store.ids("q", State.PENDING):  # what the watcher reports
        h.engine.pending_appeared("q", job_id)
    status = h.operators.status("q", h.now)["queues"]["q"]
    assert status["batches"][batch]["open"] == 3 and status["batches"][batch]["then"] == "sum"


# -- item 13: nothing left to say to a worker that said goodbye -----------------------------


def test_a_worker_that_left_is_sent_nothing_more(harness: Harness) -> None:
    h = harness
    identity = h.hello("w", slots=2)
    h.engine.workers_part.hello(identity, worker_message("hello", {"worker": "w", "queues": ["q"],
                                                     "slots": 0}), h.now)  # stopping
    worker = h.engine.workers_part.worker_for(identity, h.now)
    assert worker is not None
    h.engine.workers_part.forget(worker, "said goodbye")
    assert [m for m in h.engine.outbox if m[0] == identity] == []


# -- item 2: tcp:// implied -------------------------------------------------------------------


def test_daemon_addresses_imply_tcp() -> None:
    assert connect_endpoints("127.0.0.1:5550") == ["tcp://127.0.0.1:5550"]
    assert connect_endpoints(" a:1 , tcp://b:2,") == ["tcp://a:1", "tcp://b:2"]
    assert connect_endpoints(["ipc:///run/x"]) == ["ipc:///run/x"]
    for bad in ("127.0.0.1", "tcp://host:port", "", ","):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            connect_endpoints(bad)


# -- doctor: the store's filesystem, the clocks, the lease ----------------------------------


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
30 27 0:44 / /mnt/with\\040space rw - nfs4 server:/export rw,vers=4.2
31 27 0:45 / /dev/shm rw - tmpfs tmpfs rw
"""


def test_the_filesystem_of_a_path_is_the_longest_mount_that_holds_it(tmp_path: Path) -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert ("/mnt/with space", "nfs4", "server:/export", "0:44") in mounts
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    shm = filesystem_of("/dev/shm/x", str(info))
    assert shm is not None and shm.memory and not shm.network
    root = filesystem_of("/var/lib/ckptd/store", str(info))  # not tmp_path: it may be on tmpfs
    assert root is not None and root.fstype == "ext4" and root.mount_point == "/"


def test_an_ext4_journal_is_seen_in_proc_fs(tmp_path: Path) -> None:
    dev = os.stat("/").st_dev
    name = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"))
    proc = tmp_path / "fs"
    (proc / "ext4" / name).mkdir(parents=True)
    (proc / "jbd2").mkdir()
    major_minor = f"{os.major(dev)}:{os.minor(dev)}"
    if not os.path.exists(f"/sys/dev/block/{major_minor}"):
        pytest.skip("the root filesystem is not on a block device here")
    assert has_journal(major_minor, str(proc)) is False
    (proc / "jbd2" / f"{name}-8").mkdir()
    assert has_journal(major_minor, str(proc)) is True
    assert has_journal("0:999", str(proc)) is None


def test_doctor_on_the_store(tmp_path: Path) -> None:
    missing = check_store(Settings(root=str(tmp_path / "nope")))
    assert missing[0].level == WARNING and "check the spelling" in (missing[0].fix or "")
    (tmp_path / "file").write_text("")
    assert check_store(Settings(root=str(tmp_path / "file")))[0].level == PROBLEM
    StoreAdmin(LocalStore(str(tmp_path / "data")), Settings()).submit("price", 1)
    found = check_store(Settings(root=str(tmp_path / "data")))
    assert found[0].level == OK and "writable" in found[0].text
    assert any("1 queue(s) (price)" in f.text for f in found)
    assert check_store(Settings(root="memory://x"))[0].level == NOTE


def test_doctor_on_clocks_and_leases() -> None:
    assert _clock(1000.0, 1000.1, 1000.3).level == OK
    late = _clock(1000.0, 1005.0, 1005.2)
    assert late.level == WARNING and "ahead of" in late.text and "NTP" in (late.fix or "")
    assert check_lease(60, 5, True, "here")[0].level == OK
    assert check_lease(10, 6, False, "here")[0].level == WARNING
