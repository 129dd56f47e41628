"""A client on the daemon's host submits by writing into the daemon's store; anywhere else
(another store behind the address, direct=False) it goes through the daemon."""

from __future__ import annotations

import json
from pathlib import Path

from ckptd.client.client import Client
from tests.procs import Processes, job_files


def test_a_client_on_the_daemons_host_writes_the_job_itself(procs: Processes) -> None:
    daemon = procs.daemon(fsync="always", max_attempts="4")
    procs.worker(daemon, "q", "echo")
    with Client(daemon.control) as direct, Client(daemon.control, direct=False) as relayed:
        ours = direct.submit("q", {"n": 1})
        theirs = relayed.submit("q", {"n": 2})
        assert direct._direct_store("q") is not None and relayed._direct_store("q") is None
        direct.wait_many("q", [ours, theirs], timeout=60)
        counters = direct.status("q")["queues"]["q"]
    done = job_files(daemon.root, "q", "done")
    one, two = done[ours], done[theirs]
    assert one["result"]["echo"] == {"n": 1} and two["result"]["echo"] == {"n": 2}
    assert set(one) == set(two) and one["max_attempts"] == two["max_attempts"] == 4
    assert counters["submitted"] == 2, "the daemon counts the job it was not asked for"


def test_no_direct_path_into_another_store_behind_the_address(procs: Processes,
                                                               tmp_path: Path) -> None:
    daemon = procs.daemon()
    lock = Path(daemon.root) / ".ckptd" / "root.lock"
    holder = json.loads(lock.read_text())
    assert holder["token"]
    with Client(daemon.control) as client:
        answer = client.request("endpoints")
        assert answer["submit"]["token"] == holder["token"]
        # Another daemon's (or a stale) lock at that path: the client must not write there.
        lock.write_text(json.dumps({**holder, "token": "0" * 16}))
        try:
            assert client._direct_store("q") is None
            job_id = client.submit("q", {"n": 3})  # through the daemon
        finally:
            lock.write_text(json.dumps(holder))
    assert job_id in job_files(daemon.root, "q", "pending")
