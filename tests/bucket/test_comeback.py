"""A quick comeback: a daemon restarted after a crash leads its queues again at once, when it
can tell that its previous process is gone, and waits a lease as before when it cannot.

:func:`ckptd.daemon.cluster.previous_run.gone` on real processes (one that exited, one that
runs, marks of another boot or host), then real daemons on SeaweedFS with a lease long
enough (30 s) that "at once" and "after a lease" cannot be confused.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest

from ckptd.daemon.cluster.previous_run import MARK, gone, process_mark, start_time
from tests.helpers import wait_for
from tests.procs import Processes
from tests.s3server import SeaweedServer

Q = "work"
LONG_LEASE = {"heartbeat": "0.5s", "lease": "5s", "poll_interval": "0.3s",
              "rescan_interval": "3s", "leader_lease": "30s", "name": "daemon-a"}


def mark_of(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    found = start_time(proc.pid)
    assert found is not None
    return {**process_mark(), "pid": proc.pid, "started": found[0]}


def test_gone_only_when_it_can_tell() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mark = mark_of(child)
        assert not gone({MARK: mark}), "a running process is not gone"
        assert not gone({MARK: {**mark, "boot_id": "another-boot"}})
        assert not gone({MARK: {**mark, "host": "another-host"}})
        assert not gone({MARK: {**mark, "pid_ns": "pid:[1]"}})
        assert not gone({"pid": child.pid}) and not gone(None)  # no mark: cannot tell
        assert gone({MARK: {**mark, "started": mark["started"] - 1}}), "its pid was reused"
    finally:
        child.kill()
        child.wait()
    assert gone({MARK: mark}), "a process that exited is gone"


def leads(daemon: Any) -> bool:
    client = daemon.client(timeout=2)
    try:
        return Q in (client.request("ping", {"queues": [Q]}).get("leads") or [])
    except Exception:  # noqa: BLE001 - starting, or not answering yet
        return False
    finally:
        client.close()


def first_daemon(procs: Processes, server: SeaweedServer, url: str) -> Any:
    daemon = procs.daemon(root=url, env=server.env(), **LONG_LEASE)
    client = daemon.client(timeout=30)
    try:
        client.submit(Q, {"n": 1})
    finally:
        client.close()
    wait_for(lambda: leads(daemon), timeout=30, message="the first daemon to lead")
    return daemon


@pytest.mark.slow
def test_a_daemon_killed_and_restarted_leads_again_at_once(
        procs: Processes, s3_server: SeaweedServer) -> None:
    url = s3_server.url()
    daemon = first_daemon(procs, s3_server, url)
    daemon.kill()
    daemon.start()
    # A lease is 30 s: leading within 20 s is the comeback, not a takeover after a lease.
    wait_for(lambda: leads(daemon), timeout=20, message="the restarted daemon to lead")
    log = daemon.log().split("--- start 2 ---", 1)[1]
    assert "this daemon's before its restart, and that process is gone" in log
    assert "not renewed for a whole lease" not in log
    client = daemon.client(timeout=30)
    try:  # it leads once it holds the lease; its listing of the queue may still be going on
        wait_for(lambda: client.status(Q)["queues"][Q]["pending"] == 1, timeout=20,
                 message="the job recovered: nothing lost")
    finally:
        client.close()


@pytest.mark.slow
def test_a_daemon_that_cannot_tell_waits_a_lease(procs: Processes,
                                                 s3_server: SeaweedServer) -> None:
    """The same name while the first process still exists (stopped, not dead): the second
    daemon must wait until the lease lapses, as when the holder is on another machine."""
    url = s3_server.url()
    first = first_daemon(procs, s3_server, url)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGSTOP)
    try:
        second = procs.daemon(root=url, env=s3_server.env(),
                              **{**LONG_LEASE, "leader_lease": "4s"})
        wait_for(lambda: leads(second), timeout=60, message="a takeover after a lease")
        log = second.log()
        assert "not renewed for a whole lease; taking over" in log
        assert "that process is gone" not in log
    finally:
        first.proc.send_signal(signal.SIGCONT)
        first.kill()
