"""Operator controls on a bucket (SeaweedFS): schedules across a takeover of their queue, and
a pause that the leading daemon sees in its listing and the next one keeps after failover."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ckptd.core.schedule_settings import tick_id
from tests.bucket.helpers import STATES, prefix_of
from tests.bucket.test_bucket_daemon import FAST, daemon
from tests.bucket.test_failover import LEASE, role
from tests.helpers import wait_for
from tests.procs import REPO, Processes, base_env
from tests.s3server import SeaweedServer

Q = "ticks"


def tick_jobs(server: SeaweedServer, url: str, name: str) -> Counter[str]:
    prefix = f"{prefix_of(url)}/{Q}/"
    found: Counter[str] = Counter()
    for key in server.keys(prefix):
        folder, _, rest = key[len(prefix):].partition("/")
        if folder in STATES and rest.startswith(f"{name}.") and rest.endswith(".json"):
            found[rest[:-5]] += 1
    return found


def two(procs: Processes, server: SeaweedServer, url: str, env: dict[str, str]
        ) -> tuple[Any, Any]:
    first = daemon(procs, server, url, env=env, leader_lease=f"{LEASE}s")
    wait_for(lambda: role(first) == "active", timeout=20, message="the first daemon active")
    second = daemon(procs, server, url, env=env, leader_lease=f"{LEASE}s")
    return first, second


def leads(d: Any) -> list[str]:
    """The queues a daemon leads (none when it does not answer)."""
    try:
        with d.client(timeout=2) as client:
            return list(client.status()["daemon"]["leader"]["leads"])
    except Exception:  # noqa: BLE001 - dead or stopped
        return []


def leader_and_other(pair: tuple[Any, Any]) -> tuple[Any, Any]:
    """(the daemon leading Q, the other one), once one leads it."""
    first, second = pair
    wait_for(lambda: Q in leads(first) or Q in leads(second), timeout=20, interval=0.1,
             message=f"a daemon to lead {Q}")
    return (first, second) if Q in leads(first) else (second, first)


@pytest.mark.slow
def test_one_job_per_tick_across_a_failover(procs: Processes, s3_server: SeaweedServer,
                                            tmp_path: Path) -> None:
    config = tmp_path / "ckptd.toml"
    config.write_text(f'[schedules.beat]\nevery = "1s"\nqueue = "{Q}"\ncatch_up = "all"\n')
    url = s3_server.url()
    first, second = leader_and_other(two(procs, s3_server, url,
                                         {"CKPTD_CONFIG": str(config)}))
    began = time.time()
    wait_for(lambda: len(tick_jobs(s3_server, url, "beat")) >= 3, timeout=20,
             message="three ticks by the daemon leading the schedule's queue")
    first.kill()  # no lease given back: the other takes over within 2 x LEASE
    wait_for(lambda: Q in leads(second), timeout=4 * LEASE, interval=0.1,
             message="the other daemon to take the queue over")
    taken = len(tick_jobs(s3_server, url, "beat"))
    wait_for(lambda: len(tick_jobs(s3_server, url, "beat")) >= taken + 3, timeout=20,
             message="three ticks by the daemon that took the queue over")
    ended = time.time()
    jobs = tick_jobs(s3_server, url, "beat")
    assert all(count == 1 for count in jobs.values()), jobs
    expected = [tick_id("beat", t) for t in range(int(began) + 1, int(ended))]
    expected = [i for i in expected if i >= min(jobs)]
    missing = [i for i in expected if i not in jobs]
    assert not missing, f"ticks without a job (catch_up = all): {missing}"
    with second.client() as client:
        [row] = client.schedules()
    # A listing after the answer: a tick may have come between the one above and it.
    assert row["name"] == "beat" and row["last_id"] in tick_jobs(s3_server, url, "beat")


def test_a_paused_object_stops_claims_and_survives_failover(procs: Processes,
                                                            s3_server: SeaweedServer,
                                                            tmp_path: Path) -> None:
    url = s3_server.url()
    pair = two(procs, s3_server, url, {})

    def ckptd(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ckptd", *args], capture_output=True,
                              text=True, env=base_env(**s3_server.env()), cwd=REPO,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # The object, no daemon; the queue is new (--create: a typo is refused otherwise).
    ckptd("--root", url, "pause", Q, "--create", "--reason", "on the bucket")
    first, second = leader_and_other(pair)  # a paused queue is a queue: one daemon leads it

    def paused() -> Any:
        with first.client(timeout=5) as client:
            return (client.status()["queues"].get(Q) or {}).get("paused")

    wait_for(paused, timeout=10, interval=0.2, message="the daemon to see the paused object")
    with first.client() as client:
        job_id = client.submit(Q, {"n": 1})
    procs.worker(f"{first.control},{second.control}", Q, "echo", env=s3_server.env())

    def workers() -> int:
        with first.client(timeout=5) as client:
            return int(client.status().get("workers", 0))

    wait_for(lambda: workers() >= 1, timeout=30, interval=0.2, message="the worker to connect")
    time.sleep(1.0)  # the scenario: a worker waits, the paused queue gives it nothing
    with first.client() as client:
        assert client.show(Q, job_id)["state"] == "pending"
    first.kill()
    wait_for(lambda: Q in leads(second), timeout=4 * LEASE, interval=0.1,
             message="the other daemon to take the queue over")
    time.sleep(1.0)  # the scenario: the daemon that took over keeps the queue paused
    with second.client() as client:
        assert client.show(Q, job_id)["state"] == "pending"
        assert client.status(Q)["queues"][Q]["paused"]["reason"] == "on the bucket"
        client.resume(Q)
        assert client.wait(Q, job_id, timeout=30) == "done"
    assert FAST["poll_interval"] == "0.3s"
