"""Several daemons on one local root, each leading the queues of its ``lead`` list under a
lock per queue: they serve their queues side by side, a daemon that would lead a queue
already led is refused, any daemon answers for every queue, and a daemon killed with -9
leaves its locks to its restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptd.client.client import Client
from ckptd.core.errors import Standby
from tests.procs import DaemonProcess, Processes, job_files


def refused(d: DaemonProcess) -> tuple[int, str]:
    """Start ``d`` and return its exit code and log once it has exited."""
    d.start(wait=False)
    assert d.proc is not None
    return d.proc.wait(30), d.log()


def test_two_daemons_lead_the_queues_of_one_root_and_a_third_is_refused(
        procs: Processes) -> None:
    a = procs.daemon(lead="a1,a2", lease="3s")
    b = procs.daemon(root=a.root, lead="b1", lease="3s")
    # A third daemon that would lead a queue already led is refused, naming the holder.
    code, log = refused(procs.daemon(root=a.root, lead="a2,c1", start=False))
    assert code == 4  # in use: another daemon leads it
    assert "already leads queue a2" in log and f"control {a.control}" in log, log
    # So is a daemon for the whole root (and a lead daemon beside a whole-root one).
    code, log = refused(procs.daemon(root=a.root, start=False))
    assert code == 4 and "lead list" in log, log
    # One worker for a queue of each, given only b's address, follows each to its leader.
    procs.worker(b, ["a1", "b1"], "echo", concurrency=2)
    with Client(a.control) as client:  # a forwards what is b's
        ids = {q: client.submit_many(q, [{"n": n} for n in range(20)]) for q in ("a1", "b1")}
        for queue, queue_ids in ids.items():
            assert client.wait_many(queue, queue_ids, timeout=60)["states"] == \
                dict.fromkeys(queue_ids, "done")
        rows = client.status()["queues"]
    names = {}
    for d in (a, b):
        with Client(d.control) as one:  # (closed: a context left to the GC may hang it)
            names[d.control] = one.request("ping")["daemon"]
    assert rows["a1"]["leader"] == names[a.control] and rows["b1"]["leader"] == names[b.control]
    assert rows["b1"]["done"] == 20
    for queue, queue_ids in ids.items():
        assert set(job_files(a.root, queue, "done")) == set(queue_ids)
    assert (Path(a.root) / ".ckptd" / "queue-a1.lock").exists()


def test_a_killed_daemons_queues_go_to_its_restart_and_clients_on_the_host_write_directly(
        procs: Processes) -> None:
    a = procs.daemon(lead="a1", lease="3s")
    b = procs.daemon(root=a.root, lead="b1", lease="3s")
    procs.worker(f"{a.control},{b.control}", ["a1", "b1"], "echo")
    with Client(b.control) as client:
        # On the daemon's host a client writes into b's own queue itself, and sends a1's
        # through b (which forwards it to a).
        assert client._direct_store("b1") is not None
        assert client._direct_store("a1") is None
        first = client.submit("a1", {"n": 1})
        assert client.wait("a1", first, timeout=30) == "done"
    a.kill()
    with Client(b.control, timeout=5) as client:  # nobody leads a1 now, and b says so
        with pytest.raises(Standby, match="no daemon leads queue 'a1'"):
            client.submit("a1", {"n": 2})
    a.start()  # the kernel released a's locks at the kill: its restart takes them
    with Client(b.control) as client:
        later = client.submit("a1", {"n": 3})
        mine = client.submit("b1", {"n": 4})
        assert client.wait("a1", later, timeout=60) == "done"
        assert client.wait("b1", mine, timeout=60) == "done"
    assert set(job_files(a.root, "a1", "done")) == {first, later}


def test_a_queue_nobody_leads_is_refused_with_the_reason(procs: Processes) -> None:
    a = procs.daemon(lead="a1")
    with Client(a.control, timeout=3) as client:
        with pytest.raises(Standby, match="no daemon leads queue 'zz'"):
            client.submit("zz", {"n": 1})
    assert a.alive()
