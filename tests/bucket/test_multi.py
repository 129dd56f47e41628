"""Several daemons on one bucket, each leading some queues (a lease per queue).

Real daemons and workers on SeaweedFS: queues spread over the daemons, any daemon answers for
every queue (forwarding to the queue's leader), workers follow their queues to whichever
daemon leads them, and a daemon killed with SIGKILL has its queues taken over within two
leases while the workers go on without a restart.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from ckptd.client.client import Client
from tests.bucket.helpers import done_outcomes, read_jobs, where_jobs_are
from tests.bucket.test_bucket_daemon import FAST
from tests.helpers import wait_for
from tests.procs import Processes
from tests.s3server import SeaweedServer

LEASE = 3.0
QUEUES = [f"q{n}" for n in range(6)]


def start_daemons(procs: Processes, server: SeaweedServer, url: str, count: int,
                  **settings: Any) -> list[Any]:
    return [procs.daemon(root=url, env=server.env(), **{**FAST, **settings})
            for _ in range(count)]


def leads(d: Any) -> set[str] | None:
    """The queues daemon ``d`` says it leads now (None when it does not answer)."""
    client = Client(d.control, timeout=2)
    try:
        answer = client.request("ping", {"queues": QUEUES})
    except Exception:  # noqa: BLE001 - killed or stopped
        return None
    finally:
        client.close()
    return set(answer.get("leads") or [])


def led_by(daemons: list[Any]) -> dict[str, list[int]]:
    """queue -> the positions of the daemons that say they lead it."""
    found: dict[str, list[int]] = {q: [] for q in QUEUES}
    for position, d in enumerate(daemons):
        for queue in leads(d) or ():
            found[queue].append(position)
    return found


def balanced(daemons: list[Any], per_daemon: int) -> bool:
    found = led_by(daemons)
    load = Counter(p[0] for p in found.values() if len(p) == 1)
    return all(len(p) == 1 for p in found.values()) and \
        sorted(load.values()) == [per_daemon] * len(daemons)


def submit_all(control: str, per_queue: int) -> dict[str, list[str]]:
    with Client(control, timeout=30) as client:
        return {q: client.submit_many(q, [{"n": n} for n in range(per_queue)]) for q in QUEUES}


def done_in(server: SeaweedServer, url: str, queue: str) -> int:
    return sum(1 for states in where_jobs_are(server, url, queue).values()
               if states == ["done"])


def assert_all_done_once(server: SeaweedServer, url: str, ids: dict[str, list[str]]
                         ) -> int:
    """Every job in done/ only; return how many ran more than once (at-least-once)."""
    again = 0
    for queue, queue_ids in ids.items():
        where = where_jobs_are(server, url, queue)
        assert all(where.get(i) == ["done"] for i in queue_ids), \
            f"{queue}: {[(i, where.get(i)) for i in queue_ids if where.get(i) != ['done']][:5]}"
        again += sum(1 for job in read_jobs(server, url, queue, "done", queue_ids).values()
                     if done_outcomes(job) > 1)
    return again


def test_queues_spread_over_three_daemons_and_any_daemon_serves_them(
        procs: Processes, s3_server: SeaweedServer) -> None:
    url = s3_server.url()
    daemons = start_daemons(procs, s3_server, url, 3)
    ids = submit_all(daemons[0].control, 30)  # every request to the first daemon
    wait_for(lambda: balanced(daemons, 2), timeout=8 * LEASE, interval=0.2,
             message="two queues per daemon")
    # One worker for all six queues, given only the last daemon's address: it follows
    # each queue to its leader.
    procs.worker(daemons[2].control, QUEUES, "echo", concurrency=4, env=s3_server.env())
    wait_for(lambda: all(done_in(s3_server, url, q) == 30 for q in QUEUES), timeout=120,
             interval=0.5, message="every job done")
    assert assert_all_done_once(s3_server, url, ids) == 0
    # Status through any daemon shows every queue and the daemon that leads it.
    names = {}
    for d in daemons:
        with Client(d.control, timeout=10) as client:
            answer = client.status()
        names[answer["daemon"]["name"]] = d
        assert sorted(answer["queues"]) == QUEUES
        assert len(answer["daemon"]["members"]) == 3
    for d in daemons:
        with Client(d.control, timeout=10) as client:
            rows = client.status()["queues"]
        for queue in QUEUES:
            assert queue in (leads(names[rows[queue]["leader"]]) or set())
    # Any request about a queue works through any daemon (forwarded to its leader).
    with Client(daemons[1].control, timeout=10) as client:
        for queue in QUEUES:
            assert client.show(queue, ids[queue][0])["state"] == "done"
            assert client.wait(queue, client.submit(queue, {"n": -1}), timeout=30) == "done"


def test_a_killed_daemon_leading_two_queues_is_replaced_within_two_leases(
        procs: Processes, s3_server: SeaweedServer) -> None:
    url = s3_server.url()
    daemons = start_daemons(procs, s3_server, url, 3)
    connect = ",".join(d.control for d in daemons)
    ids = submit_all(daemons[0].control, 1)
    wait_for(lambda: balanced(daemons, 2), timeout=8 * LEASE, interval=0.2,
             message="two queues per daemon")
    workers = [procs.worker(connect, q, "sleepy", concurrency=2,
                            env={**s3_server.env(), "SLEEP": "0.02"})
               for q in QUEUES for _ in range(2)]
    victim = daemons[1]
    its_queues = leads(victim)
    assert its_queues is not None and len(its_queues) == 2
    more = submit_all(daemons[0].control, 40)
    wait_for(lambda: sum(done_in(s3_server, url, q) for q in its_queues) >= 20, timeout=60,
             interval=0.2, message="some jobs of the victim's queues done")
    victim.kill()
    killed = time.monotonic()
    others = [daemons[0], daemons[2]]

    def taken() -> bool:
        found = led_by(others)
        return all(len(found[q]) == 1 for q in its_queues)

    wait_for(taken, timeout=4 * LEASE, interval=0.05, message="its queues led again")
    took = time.monotonic() - killed
    assert took <= 2 * LEASE, f"its queues were led again after {took:.1f}s (lease {LEASE}s)"
    # The same worker processes finish the work of those queues (and of new jobs).
    later = {q: [] for q in QUEUES}
    with Client(daemons[0].control, timeout=30) as client:
        for queue in its_queues:
            later[queue] = client.submit_many(queue, [{"n": n} for n in range(20)])
    every = {q: ids[q] + more[q] + later[q] for q in QUEUES}
    wait_for(lambda: all(done_in(s3_server, url, q) == len(every[q]) for q in QUEUES),
             timeout=120, interval=0.5, message="every job done")
    assert all(w.alive() for w in workers), "no worker was restarted or died"
    assert_all_done_once(s3_server, url, every)
    # The daemon comes back: it leads again only what the balance gives it, never a queue
    # while another holds its lease (two queues per daemon once it is settled).
    victim.start()
    wait_for(lambda: balanced(daemons, 2), timeout=10 * LEASE, interval=0.2,
             message="two queues per daemon again")
