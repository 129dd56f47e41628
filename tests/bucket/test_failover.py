"""Two daemons on one bucket: the standby takes over when the active one dies.

The daemons share an ``s3://`` root on SeaweedFS; the leader lease object decides which one
is active. Workers get both control addresses and follow the active daemon.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.bucket.helpers import done_outcomes, read_jobs
from tests.bucket.test_bucket_daemon import FAST, Q, assert_each_once, daemon, submit
from tests.helpers import wait_for
from tests.procs import Processes
from tests.s3server import SeaweedServer

LEASE = 3.0


def role(d: Any) -> str | None:
    """"active", "standby", or None when the daemon does not answer."""
    client = d.client(timeout=2)
    try:
        return "standby" if client.ping().get("standby") else "active"
    except Exception:  # noqa: BLE001 - dead or stopped
        return None
    finally:
        client.close()


def done_count(d: Any) -> int:
    client = d.client(timeout=5)
    try:
        return int(client.status()["queues"].get(Q, {}).get("done", 0))
    except Exception:  # noqa: BLE001
        return -1
    finally:
        client.close()


def two_daemons(procs: Processes, server: SeaweedServer, url: str) -> tuple[Any, Any]:
    first = daemon(procs, server, url, leader_lease=f"{LEASE}s")
    wait_for(lambda: role(first) == "active", timeout=20, message="the first daemon active")
    second = daemon(procs, server, url, leader_lease=f"{LEASE}s")
    assert role(second) == "standby"
    return first, second


def pause_until_taken_over(first: Any, second: Any) -> None:
    """SIGSTOP the active daemon until the standby took over, SIGCONT it, and wait until it
    stands by (it finds its lease lapsed)."""
    assert first.proc is not None
    first.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: role(second) == "active", timeout=4 * LEASE, interval=0.05,
                 message="the standby to take over")
    finally:
        first.proc.send_signal(signal.SIGCONT)
    # (a bound for a loaded machine: each look is a ping with a 2 s timeout, and the woken
    # daemon has a lease's worth of answers and messages to get through first)
    wait_for(lambda: role(first) == "standby", timeout=10 * LEASE, interval=0.1,
             message="the paused daemon to stand by")


def test_a_standby_leads_nothing_and_sends_requests_to_the_leader(
        procs: Processes, s3_server: SeaweedServer) -> None:
    """A standby (a daemon that leads nothing while another runs) serves nothing itself: a
    request about the queue goes on to the daemon that leads it (before a lease per queue
    it was refused; a client given only the standby's address could not submit)."""
    from ckptd.client.client import Client

    first, second = two_daemons(procs, s3_server, s3_server.url())
    first_id = submit(first, 1)[0]  # the first daemon asked about the queue leads it
    with second.client() as client:
        assert client.status()["daemon"]["role"] == "standby"
        job_id = client.submit(Q, {"n": 1})  # forwarded to the first daemon
        assert client.show(Q, job_id)["state"] == "pending"
        # The standby learns the queue's leader from the leases, read every poll_interval:
        # on a loaded machine a moment after the submit it forwarded.
        leader = status_of(first)["daemon"]["name"]
        wait_for(lambda: client.status()["queues"].get(Q, {}).get("leader") == leader,
                 timeout=10, interval=0.1, message="the standby's status to name the leader")
        assert client.ping()["standby"] is True
    with first.client() as client:
        assert {first_id, job_id} <= {i for _, i in client.ls(Q)}
        assert client.status()["daemon"]["role"] == "active"
    # A client given both addresses reaches the leader either way.
    with Client([second.control, first.control], timeout=5) as client:
        job_id = client.submit(Q, {"n": 2})
        assert client.show(Q, job_id)["state"] == "pending"


def status_of(d: Any) -> dict[str, Any]:
    client = d.client(timeout=5)
    try:
        return client.status()
    finally:
        client.close()


@pytest.mark.slow
def test_the_standby_takes_over_when_the_active_daemon_is_killed(
        procs: Processes, s3_server: SeaweedServer, tmp_path: Any) -> None:
    url = s3_server.url()
    first, second = two_daemons(procs, s3_server, url)
    env = {**s3_server.env(), "TEST_LOG": str(tmp_path / "runs"), "SLEEP": "0.05"}
    connect = f"{first.control},{second.control}"
    for _ in range(2):
        procs.worker(connect, Q, "sleepy", concurrency=4, env=env)
    ids = submit(first, 400)
    wait_for(lambda: done_count(first) >= 100, timeout=120, interval=0.2,
             message="100 jobs done by the first daemon")
    first.kill()  # SIGKILL mid-run: no lease given back
    killed = time.monotonic()
    wait_for(lambda: role(second) == "active", timeout=4 * LEASE, interval=0.05,
             message="the standby to take over")
    took = time.monotonic() - killed
    assert took <= 2 * LEASE, f"the standby took {took:.1f}s (lease {LEASE:g}s)"
    wait_for(lambda: done_count(second) == 400, timeout=180, interval=0.5,
             message="every job done by the second daemon")
    assert_each_once(s3_server, url, ids)
    finished = read_jobs(s3_server, url, Q, "done", ids)
    for job_id in ids:  # fencing: no job was finished twice (by the two daemons)
        assert done_outcomes(finished[job_id]) == 1
    assert f"took the lease of queue {Q}" in second.log()


@pytest.mark.slow
def test_a_paused_daemon_that_lost_its_lease_writes_nothing(
        procs: Processes, s3_server: SeaweedServer, tmp_path: Any) -> None:
    """Fencing: SIGSTOP the active daemon until the standby took over, then SIGCONT it."""
    url = s3_server.url()
    first, second = two_daemons(procs, s3_server, url)
    connect = f"{first.control},{second.control}"
    env = {**s3_server.env(), "SLEEP": "0.05"}
    for _ in range(2):
        procs.worker(connect, Q, "sleepy", concurrency=4, env=env)
    ids = submit(first, 200)
    wait_for(lambda: done_count(first) >= 40, timeout=120, interval=0.2,
             message="40 jobs done by the first daemon")
    pause_until_taken_over(first, second)
    wait_for(lambda: done_count(second) == 200, timeout=180, interval=0.5,
             message="every job done")
    assert_each_once(s3_server, url, ids)
    finished = read_jobs(s3_server, url, Q, "done", ids)
    for job_id in ids:
        assert done_outcomes(finished[job_id]) == 1
    log = first.log()
    assert f"no longer leads queue {Q} and writes nothing more there" in log
    assert FAST  # the same fast timings as the other bucket tests


def _lease_s(d: Any) -> float | None:
    client = d.client(timeout=5)
    try:
        return float(client.status()["daemon"]["lease_s"])
    except Exception:  # noqa: BLE001 - not answering right now
        return None
    finally:
        client.close()


def test_sighup_reaches_every_part_of_a_bucket_daemon(procs: Processes, s3_server: SeaweedServer,
                                                      tmp_path: Any) -> None:
    """The new lease is used after SIGHUP by the active daemon and by a standby alike (the
    bucket role used to keep the settings it was started with)."""
    config = tmp_path / "ckptd.toml"
    config.write_text('lease = "5s"\n')
    url = s3_server.url()
    env = {**s3_server.env(), "CKPTD_CONFIG": str(config)}
    settings = {k: v for k, v in FAST.items() if k != "lease"}
    settings["leader_lease"] = f"{LEASE}s"
    first = procs.daemon(root=url, env=env, **settings)
    wait_for(lambda: role(first) == "active", timeout=20, message="the first daemon active")
    second = procs.daemon(root=url, env=env, **settings)
    assert role(second) == "standby"
    assert _lease_s(first) == _lease_s(second) == 5.0
    config.write_text('lease = "7s"\n')
    for d in (first, second):
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: _lease_s(second) == 7.0, timeout=10, message="the standby's new lease")
    wait_for(lambda: _lease_s(first) == 7.0, timeout=10, message="the active daemon's new lease")
    job_id = submit(first, 1)[0]
    procs.worker(first, Q, "sleepy", env={**s3_server.env(), "SLEEP": "3"})
    client = first.client(timeout=5)
    try:
        lease = wait_for(lambda: client.show(Q, job_id).get("lease"), timeout=20,
                         message="the job claimed")
        assert lease["lease_s"] == 7.0
    finally:
        client.close()


def test_a_wait_at_a_daemon_that_loses_its_lease_ends_at_the_new_leader(
        procs: Processes, s3_server: SeaweedServer) -> None:
    """A client waiting at the active daemon when that daemon loses its queue's lease (paused
    past it: a stall under load) is told to ask again, and its wait ends where the queue is
    led now. It used to end in RemoteStandby ("another daemon leads it now"), seen in CI
    when a loaded machine let a lone daemon's lease lapse."""
    import threading

    url = s3_server.url()
    first, second = two_daemons(procs, s3_server, url)
    ids = submit(first, 1)  # no worker yet: it waits in pending/
    outcome: dict[str, Any] = {}

    def waiting() -> None:
        client = first.client(timeout=150)
        try:
            outcome["state"] = client.wait(Q, ids[0], timeout=150)
        except Exception as exc:  # noqa: BLE001 - the test reports what the wait raised
            outcome["error"] = exc
        finally:
            client.close()

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()
    time.sleep(1.0)  # the wait is held by the first daemon
    pause_until_taken_over(first, second)
    procs.worker(f"{first.control},{second.control}", Q, "sleepy",
                 env={**s3_server.env(), "SLEEP": "0.05"})
    thread.join(160)
    assert outcome == {"state": "done"}, outcome
