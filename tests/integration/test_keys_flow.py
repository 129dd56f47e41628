"""Flow control by key with real processes: max_running and rate per key (across a daemon
kill -9), a uniqueness window, and debounce (issue 24's "What it must show")."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from ckptd.client.client import Client
from ckptd.core.timefmt import parse_iso
from tests.helpers import wait_for
from tests.integration.worker_helpers import config_file
from tests.procs import Processes, job_files

Q = "quote"
KEYS = ("supplier-a", "supplier-b", "supplier-c")


def claimed_by_key(root: str, key_of: dict[str, str]) -> Counter[str]:
    """The files in claimed/ now, counted by the key of their job."""
    try:
        names = os.listdir(os.path.join(root, Q, "claimed"))
    except FileNotFoundError:
        return Counter()
    return Counter(key_of.get(n[:-len(".json")].split(",")[0], "?")
                   for n in names if n.endswith(".json"))


class KeySampler(threading.Thread):
    """Counts the claimed jobs of each key every 10 ms; keeps the largest count of each."""

    def __init__(self, root: str, key_of: dict[str, str]) -> None:
        super().__init__()
        self.root, self.key_of = root, key_of
        self.most: Counter[str] = Counter()
        self.samples = 0
        self.at_limit = 0  # samples where some key had 2 claimed
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            counts = claimed_by_key(self.root, self.key_of)
            for key, count in counts.items():
                self.most[key] = max(self.most[key], count)
            self.samples += 1
            self.at_limit += any(c == 2 for c in counts.values())
            time.sleep(0.01)


def test_max_running_per_key_holds_over_every_worker_and_a_kill(procs: Processes,
                                                                tmp_path: Path) -> None:
    env = config_file(tmp_path, f'[queues.{Q}]\nkey = "payload.supplier"\n'
                                f'[queues.{Q}.keys]\nmax_running = 2\n')
    daemon = procs.daemon(env=env, lease="3s")
    for _ in range(4):
        procs.worker(daemon, Q, "sleepy", concurrency=4, env={"SLEEP": "0.1"})
    payloads = [{"supplier": KEYS[n % 3], "n": n} for n in range(240)]
    with daemon.client() as client:
        ids = client.submit_many(Q, payloads)
    key_of = {job_id: p["supplier"] for job_id, p in zip(ids, payloads, strict=True)}
    sampler = KeySampler(daemon.root, key_of)
    sampler.start()
    try:
        wait_for(lambda: len(job_files(daemon.root, Q, "done")) >= 60, timeout=90,
                 message="60 jobs done")
        daemon.kill()  # kill -9: jobs stay claimed, the new daemon counts them per key
        daemon.start()
        with daemon.client() as client:
            keys = client.status(Q)["queues"][Q]["keys"]
            assert keys["every_key"]["max_running"] == 2
            assert client.wait_many(Q, None, timeout=180)["open"] == 0
    finally:
        sampler.stop.set()
        sampler.join()
    done = job_files(daemon.root, Q, "done")
    assert len(done) == 240
    assert {job["key"] for job in done.values()} == set(KEYS)  # kept in the job file
    assert sampler.samples > 100
    assert set(sampler.most) <= set(KEYS)
    assert max(sampler.most.values()) <= 2, f"claimed at once per key: {sampler.most}"
    # The limit was used (16 slots, 6 of them allowed): a limit of 1 would give 0 here.
    assert sampler.at_limit > sampler.samples / 8


def test_rate_per_key_gives_each_key_its_rate(procs: Processes, tmp_path: Path) -> None:
    keys = [f"tenant-{n}" for n in range(5)]
    env = config_file(tmp_path, f'[queues.{Q}]\n[queues.{Q}.keys]\nrate = "10/s"\n')
    daemon = procs.daemon(env=env)
    for _ in range(2):
        procs.worker(daemon, Q, "echo", concurrency=8)
    with daemon.client() as client:
        for key in keys:  # the key named by the submit (submit --key)
            client.submit_many(Q, [{"n": n} for n in range(400)], key=key)
    wait_for(lambda: len(job_files(daemon.root, Q, "done")) >= 25, timeout=60,
             message="the first claims")
    time.sleep(1.0)  # past each key's first burst
    start = time.time()
    time.sleep(20.0)
    claims: Counter[str] = Counter()
    for job in job_files(daemon.root, Q, "done").values():
        if start <= parse_iso(job["history"][0]["claimed"]) < start + 20.0:
            claims[job["key"]] += 1
    for key in keys:
        assert 180 <= claims[key] <= 220, f"claims in 20 s at 10/s per key: {dict(claims)}"


def paced_submits(client: Client, count: int, every: float) -> tuple[set[str], float]:
    """``count`` submits of customer acme (``n`` counting), one every ``every`` seconds;
    the ids they were given, and the wall time just before the last was sent (the daemon
    got it after that)."""
    ids = set()
    start = time.monotonic()
    sent = 0.0
    for n in range(count):
        wait = start + n * every - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sent = time.time()
        ids.add(client.submit(Q, {"customer": "acme", "n": n}))
    return ids, sent


@pytest.mark.slow
def test_window_makes_one_job_per_window(procs: Processes, tmp_path: Path) -> None:
    env = config_file(tmp_path, f'[queues.{Q}]\nunique_fields = ["customer"]\n'
                                'unique_window = "10s"\n')
    daemon = procs.daemon(env=env)
    procs.worker(daemon, Q, "echo", concurrency=2)
    with daemon.client() as client:
        ids, _ = paced_submits(client, 1000, 0.06)  # 1,000 submits over 60 s
        assert client.wait_many(Q, None, timeout=60)["open"] == 0
    made = job_files(daemon.root, Q, "done")
    assert set(made) == ids
    assert 5 <= len(made) <= 7, f"{len(made)} jobs from 60 s of submits, window 10 s"
    # Each is the first submit of its window.
    firsts = sorted(job["payload"]["n"] for job in made.values())
    assert firsts[0] == 0


def test_debounce_makes_one_job_with_the_last_payload(procs: Processes, tmp_path: Path
                                                      ) -> None:
    env = config_file(tmp_path, f'[queues.{Q}]\nunique_fields = ["customer"]\n'
                                'debounce = "1s"\n')
    daemon = procs.daemon(env=env)
    procs.worker(daemon, Q, "echo", concurrency=2)
    with daemon.client() as client:
        ids, last = paced_submits(client, 100, 0.1)  # 100 submits 100 ms apart
        assert client.wait_many(Q, None, timeout=60)["open"] == 0
    assert len(ids) == 1
    made = job_files(daemon.root, Q, "done")
    assert list(made) == list(ids)
    job = made[ids.pop()]
    assert job["payload"] == {"customer": "acme", "n": 99}
    assert job["result"]["echo"] == {"customer": "acme", "n": 99}
    assert parse_iso(job["history"][0]["claimed"]) >= last + 1.0 - 0.01
