"""Schedules with real processes: one job per tick, through kill -9 of the daemon.

The rules (the ticks, one job each however the loop turns, what a restart catches up) are
checked on the engine and a fake clock in tests/unit/test_schedules.py; these prove them
through real kills, with the ``schedules`` command."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ckptd.core.schedule_settings import tick_id
from tests.helpers import wait_for
from tests.integration.worker_helpers import config_file
from tests.procs import REPO, Processes, base_env

Q = "ticks"
STATES = ("pending", "claimed", "done", "failed")


def tick_jobs(root: str, name: str) -> Counter[str]:
    """How many files each tick id of schedule ``name`` has, over every state."""
    found: Counter[str] = Counter()
    for state in STATES:
        folder = Path(root) / Q / state
        for path in folder.glob(f"{name}.*.json") if folder.exists() else []:
            found[path.name[:-5]] += 1
    return found


@pytest.mark.slow
def test_every_tick_once_through_three_kills(procs: Processes, tmp_path: Path) -> None:
    """every = 1s, catch_up = all, about 10 s with the daemon SIGKILLed three times (once
    right at a tick): every tick from the first to the last has exactly one job, never two.
    The waits are the scenario: the daemon runs, and is down, across ticks."""
    env = config_file(tmp_path, f'[schedules.beat]\nevery = "1s"\nqueue = "{Q}"\n'
                                'catch_up = "all"\npayload = {kind = "beat"}\n')
    daemon = procs.daemon(env=env)
    procs.worker(daemon, Q, "echo", concurrency=2)
    began = time.time()
    for kill in range(3):
        seen = len(tick_jobs(daemon.root, "beat"))
        wait_for(lambda seen=seen: len(tick_jobs(daemon.root, "beat")) >= seen + 2,
                 timeout=30, message="two more ticks")
        if kill == 1:  # right at a tick: a few ms after the second turns
            now = time.time()
            time.sleep(math.ceil(now) - now + 0.003)
        daemon.kill()
        time.sleep(0.5 + kill * 0.5)  # down across one or two ticks
        daemon.start()
    # The missed ticks are submitted first, oldest first, then the ticks as they come: once
    # the first tick after the last start has its job, every tick before it has had its turn.
    last = int(time.time()) + 1
    wait_for(lambda: tick_id("beat", last) in tick_jobs(daemon.root, "beat"), timeout=30,
             message="the first tick after the last start")
    jobs = tick_jobs(daemon.root, "beat")
    assert all(count == 1 for count in jobs.values()), \
        [i for i, c in jobs.items() if c > 1]
    first = min(jobs)
    expected = [tick_id("beat", t) for t in range(int(began) + 1, last + 1)]
    expected = [i for i in expected if i >= first]
    missing = [i for i in expected if i not in jobs]
    assert not missing, f"ticks without a job: {missing} (began {began:.3f}, jobs " \
        f"{sorted(jobs)})\n{daemon.log()[-3000:]}"
    assert len(jobs) >= last - int(began) - 3
    record = json.loads((Path(daemon.root) / Q / "schedules" / "beat.json").read_text())
    assert record["last_id"] in jobs
    with daemon.client() as client:  # the jobs ran
        done = client.wait_many(Q, None, timeout=60)
    assert done["open"] == 0
    payloads = [json.loads(p.read_text())["payload"] for p in
                (Path(daemon.root) / Q / "done").glob("beat.*.json")]
    assert payloads and all(p == {"kind": "beat"} for p in payloads)


@pytest.mark.slow
def test_catch_up_last_and_none_after_an_outage(procs: Processes, tmp_path: Path) -> None:
    """While no daemon runs, ticks are missed: "last" submits the latest one at start,
    "none" none; both then go on tick by tick. ckptd schedules shows the next and last."""
    env = config_file(tmp_path, '\n'.join(
        f'[schedules.{name}]\nevery = "1s"\nqueue = "{Q}"\ncatch_up = "{name}"\n'
        for name in ("last", "none")))
    daemon = procs.daemon(env=env)
    wait_for(lambda: len(tick_jobs(daemon.root, "last")) >= 2
             and len(tick_jobs(daemon.root, "none")) >= 2, timeout=10, message="ticks")
    daemon.kill()
    before = {name: set(tick_jobs(daemon.root, name)) for name in ("last", "none")}
    down = time.time()
    time.sleep(3.2)  # the scenario: an outage across three ticks
    starting = time.time()
    daemon.start()
    up = time.time()  # the daemon caught up somewhere between starting and up
    wait_for(lambda: all(tick_id(name, t) in tick_jobs(daemon.root, name)
                         for name in ("last", "none") for t in (int(up) + 1,)),
             timeout=30, message="the first tick after the start, of both schedules")
    after = {name: set(tick_jobs(daemon.root, name)) - before[name] for name in before}

    def ran(name: str, end: float) -> list[str]:
        """The ticks of ``name`` run since the kill whose time is after it and by ``end``."""
        ticks = {tick_id("x", t)[2:] for t in range(int(down) + 1, int(end) + 1)}
        return sorted(i for i in after[name] if i.split(".", 1)[1] in ticks)

    # Missed for sure: the ticks by `starting`. A slow start (a loaded machine) may also
    # have run regular ticks between `starting` and `up`, one per second.
    slack = int(up) - int(starting)
    certain = ran("last", starting)
    assert len(certain) <= 1, f"one run for the outage, not {certain}"
    assert not certain or certain[0].split(".", 1)[1] == tick_id("x", int(starting))[2:], \
        f"the latest missed tick ({int(starting)}), not {certain}"  # not an older one
    assert 1 <= len(ran("last", up)) <= 1 + slack, ran("last", up)
    assert len(ran("none", up)) <= 1 + slack  # at most the tick of the start itself
    listed = subprocess.run([sys.executable, "-m", "ckptd", "--connect", daemon.control,
                             "schedules", "--json"], capture_output=True, text=True,
                            env=base_env(), cwd=REPO, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["schedules"]}
    assert set(rows) == {"last", "none"}
    assert rows["last"]["last"] and rows["last"]["next"] > rows["last"]["last"]
    on_store = subprocess.run([sys.executable, "-m", "ckptd", "--root", daemon.root,
                               "schedules"], capture_output=True, text=True,
                              env=base_env(**env), cwd=REPO, timeout=60)
    assert on_store.returncode == 0 and "every 1s" in on_store.stdout, on_store.stderr
    assert os.path.exists(Path(daemon.root) / Q / "schedules" / "none.json")
