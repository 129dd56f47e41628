"""kill -9 the daemon during a price-list batch (chunks fanned out per supplier, parked for
their quotes), at its reduce hand-over and at its approval: one reduce job, the same price
list."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.test_pricelist import (
    QUEUES,
    approve_when_waiting,
    check_price_list,
    submit_items,
)
from tests.pricelist_setup import worker_env, write_items
from tests.procs import Processes, count_files


@pytest.mark.slow
def test_kills_during_the_batch_and_at_the_reduce_leave_one_reduce(
        procs: Processes, tmp_path: Path, suppliers: dict[str, str]) -> None:
    rng = random.Random(23)
    items = write_items(str(tmp_path / "items.csv"), 4000)
    daemon = procs.daemon(lease="3s", heartbeat="0.5s", backoff_base="0.1s")
    for _ in range(2):
        procs.worker(daemon, QUEUES, "pricelist.tasks:handle", concurrency=8,
                     env=worker_env(suppliers))
    batch = submit_items(daemon.root, str(tmp_path / "items.csv"))
    kills = 0
    # Random kills while the batch runs (the last one is armed to die exactly when the
    # reduce job has been submitted but before the manifest records it).
    while count_files(daemon.root, "price", "done") < 60:
        time.sleep(rng.uniform(0.5, 2.0))  # the scenario: kills at random instants
        daemon.kill()
        kills += 1
        daemon.env_extra = {"CKPTD_CRASH_AT": "reduce_submitted"} if kills >= 4 else {}
        daemon.start()
        if kills >= 4:
            break
    wait_for(lambda: not daemon.alive(), timeout=600, interval=0.2,
             message="the daemon to die at the reduce hand-over")
    kills += 1
    assert count_files(daemon.root, "pricelist", "pending") == 1
    daemon.env_extra = {}
    daemon.start()
    # And once more right after it came back, around the hand-over.
    time.sleep(rng.uniform(0.0, 0.5))
    daemon.kill()
    kills += 1
    daemon.start()
    approve_when_waiting(daemon.root, batch)
    daemon.kill()  # and once more while it is approved
    kills += 1
    daemon.start()
    wait_for(lambda: count_files(daemon.root, "pricelist", "done") == 1, timeout=600,
             interval=0.5, message="the price list")
    assert kills >= 5
    check_price_list(daemon.root, batch, items)
    assert '"reduced"' in (Path(daemon.root) / "price" / "batches" / f"{batch}.json").read_text()
