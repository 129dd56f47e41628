"""The daemon on a real S3 server (SeaweedFS): jobs end to end, crashes, outages, faults.

Every test runs real ``ckptd serve`` and ``ckptd worker`` processes against ``s3://`` roots
on a SeaweedFS started by the test session (or by the test itself when it kills the server),
and checks the outcome in the bucket itself, behind ckptd's back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from ckptd.core.errors import CkptdError
from ckptd.core.ids import new_id
from tests.bucket.faultproxy import FaultProxy
from tests.bucket.helpers import done_outcomes, read_job, where_jobs_are
from tests.helpers import wait_for
from tests.procs import REPO, Processes, base_env, read_lines
from tests.s3server import SeaweedServer

Q = "work"
FAST = {"heartbeat": "0.5s", "lease": "5s", "poll_interval": "0.3s", "rescan_interval": "3s",
        "leader_lease": "3s", "backoff_base": "0.2s", "backoff_cap": "1s"}


def daemon(procs: Processes, server: SeaweedServer, url: str, endpoint: str | None = None,
           env: dict[str, str] | None = None, **settings: Any) -> Any:
    """A daemon on ``url`` (through ``endpoint`` when given, e.g. a fault proxy)."""
    environment = {**server.env(), **(env or {})}
    if endpoint:
        environment["CKPTD_S3_ENDPOINT_URL"] = endpoint
    return procs.daemon(root=url, env=environment, **{**FAST, **settings})


def workers(procs: Processes, server: SeaweedServer, connect: Any, handler: str = "echo",
            count: int = 2, log: str | None = None, concurrency: int = 4) -> list[Any]:
    env = server.env()
    if log:
        env["TEST_LOG"] = log
    return [procs.worker(connect, Q, handler, concurrency=concurrency, env=env)
            for _ in range(count)]


def submit(d: Any, count: int, chunk: int = 250) -> list[str]:
    client = d.client(timeout=30)
    try:
        ids: list[str] = []
        for start in range(0, count, chunk):
            ids += client.submit_many(Q, [{"n": n} for n in range(start,
                                                                  min(count, start + chunk))])
        return ids
    finally:
        client.close()


def submit_resending(d: Any, count: int, chunk: int) -> list[str]:
    """Submit with ids of our own and send a refused request again (the same ids: what was
    made is returned, not made twice), as a producer does: a create that met a fault on
    each of its tries is refused to the client, never lost."""
    client = d.client(timeout=30)
    try:
        ids = [new_id() for _ in range(count)]
        for start in range(0, count, chunk):
            part = ids[start:start + chunk]
            for attempt in range(5):
                try:
                    client.submit_many(Q, [{"n": n} for n in range(start, start + len(part))],
                                       ids=part)
                    break
                except CkptdError:
                    if attempt == 4:
                        raise
        return ids
    finally:
        client.close()


def status(d: Any) -> dict[str, Any]:
    client = d.client(timeout=10)
    try:
        return client.status()
    finally:
        client.close()


def done_count(d: Any) -> int:
    try:
        return int(status(d)["queues"].get(Q, {}).get("done", 0))
    except Exception:  # noqa: BLE001 - not answering right now
        return -1


def assert_each_once(server: SeaweedServer, url: str, ids: list[str], state: str = "done"
                     ) -> dict[str, list[str]]:
    """Every id in exactly one state folder, that one ``state``; nothing else there."""
    where = where_jobs_are(server, url, Q)
    twice = {i: s for i, s in where.items() if len(s) > 1}
    assert not twice, f"jobs in two states: {list(twice.items())[:5]}"
    missing = [i for i in ids if i not in where]
    assert not missing, f"{len(missing)} job(s) lost, e.g. {missing[:3]}"
    elsewhere = {i: where[i] for i in ids if where[i] != [state]}
    assert not elsewhere, f"jobs not {state}: {list(elsewhere.items())[:5]}"
    assert set(where) == set(ids), "jobs that nobody submitted"
    return where


@pytest.mark.slow
def test_a_thousand_jobs_end_to_end(procs: Processes, s3_server: SeaweedServer,
                                    tmp_path: Any) -> None:
    url = s3_server.url()
    d = daemon(procs, s3_server, url)
    workers(procs, s3_server, d, log=str(tmp_path / "runs"))
    ids = submit(d, 1000)
    wait_for(lambda: done_count(d) == 1000, timeout=240, interval=0.5,
             message="1,000 jobs done")
    assert_each_once(s3_server, url, ids)
    for job_id in ids[::97]:  # results are in the job files
        job = read_job(s3_server, url, Q, "done", job_id)
        assert job["result"]["echo"]["n"] == ids.index(job_id)
        assert done_outcomes(job) == 1
    answer = status(d)
    assert answer["daemon"]["role"] == "active"
    assert answer["daemon"]["store"]["available"] is True
    runs = read_lines(str(tmp_path / "runs"))
    assert len({line.split()[2] for line in runs}) == 1000


def test_requests_per_job_through_the_daemon(procs: Processes,
                                             s3_server: SeaweedServer) -> None:
    """What a job costs on the bucket, counted by the daemon itself (listings and the lease
    included): a create; a copy and a delete for its claim; a PUT and a delete when done,
    without a look first; the deletes of the old copies of a group sent together. With the
    default settings: the short leases and listings of FAST add requests of their own, and
    under load a 3 s leader lease can lapse (and the queue be listed again)."""
    url = s3_server.url()
    d = procs.daemon(root=url, env=s3_server.env())
    workers(procs, s3_server, d)

    def requests() -> int:
        return int(status(d)["daemon"]["store"]["requests"].get("requests", 0))

    wait_for(lambda: status(d)["workers"] == 2, timeout=30, message="2 workers")
    before = requests()
    ids = submit(d, 400)
    wait_for(lambda: done_count(d) == 400, timeout=120, interval=0.2,
             message="400 jobs done")
    per_job = (requests() - before) / 400
    assert per_job <= 5.0, f"{per_job:.2f} requests per job"
    assert_each_once(s3_server, url, ids)


def test_the_bucket_is_listed_for_files_producers_put_there(procs: Processes,
                                                            s3_server: SeaweedServer) -> None:
    """No watcher on a bucket: a producer's file in pending/ is found by the listing."""
    from ckptd.core import jobs

    url = s3_server.url()
    d = daemon(procs, s3_server, url)
    workers(procs, s3_server, d, count=1)
    client = s3_server.client()
    ids = [f"by-hand-{n}" for n in range(20)]
    prefix = url.split("/", 3)[3]
    for n, job_id in enumerate(ids):
        data = jobs.encode(jobs.new_job(Q, job_id, {"n": n}, 1_795_000_000.0, max_attempts=3))
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{Q}/pending/{job_id}.json",
                          Body=data)
    client.close()
    wait_for(lambda: done_count(d) == 20, timeout=60, interval=0.3, message="20 jobs done")
    assert_each_once(s3_server, url, ids)


def test_a_crash_between_copy_and_delete_loses_and_duplicates_nothing(
        procs: Processes, s3_server: SeaweedServer) -> None:
    """SIGKILL right after a move's copy (labelled crash point "after_copy"), then restart."""
    url = s3_server.url()
    first = daemon(procs, s3_server, url, env={"CKPTD_CRASH_AT": "after_copy:150"})
    workers(procs, s3_server, first.control)
    ids = submit(first, 200)
    wait_for(lambda: not first.alive(), timeout=60, message="the daemon to crash at after_copy")
    assert first.proc is not None and first.proc.returncode == -signal.SIGKILL
    # The control: the crash did leave a job under two keys (or the test would prove nothing).
    where = where_jobs_are(s3_server, url, Q)
    assert any(len(states) > 1 for states in where.values()), "no job left in two states"
    assert all(i in where for i in ids), "a job vanished at the crash itself"
    first.env_extra.pop("CKPTD_CRASH_AT")
    first.start()  # recovery resolves the pair; the workers reconnect by themselves
    wait_for(lambda: done_count(first) == 200, timeout=120, interval=0.5,
             message="every job done after the restart")
    assert_each_once(s3_server, url, ids)
    assert "recovery: repaired" in first.log() or "duplicate" in first.log()


@pytest.mark.slow
def test_the_s3_server_killed_and_restarted_mid_run(
        procs: Processes, s3_server_factory: Any, tmp_path: Any) -> None:
    server = s3_server_factory()
    url = server.url()
    d = daemon(procs, server, url, store_timeout="2s")
    workers(procs, server, d, handler="sleepy")
    ids = submit(d, 300)
    wait_for(lambda: done_count(d) >= 60, timeout=120, interval=0.2, message="60 jobs done")
    server.kill()
    wait_for(lambda: status(d)["daemon"]["store"]["available"] is False, timeout=60,
             interval=0.2, message="the daemon to report the store unavailable")
    answer = status(d)
    assert answer["daemon"]["store"]["error"]
    server.start()  # same data folder: SeaweedFS kept what it acknowledged
    wait_for(lambda: done_count(d) == 300, timeout=180, interval=0.5,
             message="every job done once the server is back")
    assert_each_once(server, url, ids)
    assert status(d)["daemon"]["store"]["available"] is True
    assert "store unavailable" in d.log() and "store available again" in d.log()


@pytest.mark.slow
def test_injected_faults_lose_nothing(procs: Processes, s3_server: SeaweedServer) -> None:
    """503 SlowDown, 500, reset connections and 2 s delays on the daemon's requests."""
    proxy = FaultProxy(s3_server.endpoint, slowdown=0.04, error=0.03, reset=0.02,
                       delay=0.004, delay_s=2.0).start()
    try:
        url = s3_server.url()
        d = daemon(procs, s3_server, url, endpoint=proxy.endpoint, store_timeout="8s")
        workers(procs, s3_server, d)
        ids = submit_resending(d, 200, chunk=50)
        wait_for(lambda: done_count(d) == 200, timeout=240, interval=0.5,
                 message="every job done through the faults")
        answer = status(d)
        store = answer["daemon"]["store"]
        assert store["requests"].get("retries", 0) + store["retried_ops"] > 0, store
    finally:
        proxy.stop()
    assert proxy.counts["slowdown"] and proxy.counts["error"] and proxy.counts["reset"]
    assert proxy.counts["delay"]
    assert_each_once(s3_server, url, ids)


def test_two_producers_racing_for_the_same_ids_make_one_job_each(
        s3_server: SeaweedServer, tmp_path: Any) -> None:
    url = s3_server.url()
    ids = [f"order-{n}" for n in range(40)]
    env = base_env(**s3_server.env(), CKPTD_ROOT=url, PYTHONFAULTHANDLER="1")
    script = ("import sys\n"
              "from ckptd.store.admin import StoreAdmin\n"
              "from ckptd.core.config import load_settings\n"
              "from ckptd.core.errors import JobExists\n"
              "from ckptd.store import store_from_settings\n"
              "settings = load_settings()\n"
              "admin = StoreAdmin(store_from_settings(settings), settings)\n"
              "sys.stdin.readline()\n"  # both start together
              "for job_id in sys.argv[1:]:\n"
              "    try:\n"
              "        admin.submit('work', {'by': sys.argv[0]}, job_id=job_id)\n"
              "        print('created', job_id, flush=True)\n"
              "    except JobExists:\n"
              "        print('exists', job_id, flush=True)\n")
    producers = [subprocess.Popen([sys.executable, "-c", script, *ids], cwd=REPO, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  stderr=subprocess.PIPE)
                 for _ in range(2)]
    for producer in producers:
        assert producer.stdin is not None
        producer.stdin.write("go\n")
        producer.stdin.flush()
    comms = [p.communicate(timeout=120) for p in producers]
    outputs = [c[0].split("\n") for c in comms]
    assert all(p.returncode == 0 for p in producers), \
        [(p.returncode, c[1][-3000:]) for p, c in zip(producers, comms)]
    created = [line.split()[1] for out in outputs for line in out if line.startswith("created")]
    assert sorted(created) == sorted(ids), "each id created by exactly one producer"
    where = where_jobs_are(s3_server, url, Q)
    assert sorted(where) == sorted(ids) and all(s == ["pending"] for s in where.values())


def test_workers_read_big_payloads_straight_from_the_bucket(
        procs: Processes, s3_server: SeaweedServer, tmp_path: Any) -> None:
    """A payload over message_inline_limit: read from the bucket with the worker's own
    credentials; a worker without credentials fetches it through the daemon."""
    url = s3_server.url()
    d = daemon(procs, s3_server, url, message_inline_limit="1KiB")
    direct = procs.worker(d, Q, "echo", env=s3_server.env())
    client = d.client()
    big = {"blob": "x" * 4000}
    first = client.submit(Q, big)
    assert client.wait(Q, first, timeout=60) == "done"
    assert client.result(Q, first)["echo"] == big
    direct.terminate()
    assert "reading payloads straight from s3://" in direct.log()
    no_credentials = {"CKPTD_S3_ENDPOINT_URL": s3_server.endpoint,
                      "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "",
                      "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                      "AWS_CONFIG_FILE": os.devnull}
    fetching = procs.worker(d, Q, "echo", env=no_credentials)
    second = client.submit(Q, big)
    assert client.wait(Q, second, timeout=60) == "done"
    assert client.result(Q, second)["echo"] == big
    client.close()
    fetching.terminate()
    assert "reading payloads through the daemon" in fetching.log()
