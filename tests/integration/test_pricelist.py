"""The worked example end to end: 10,000 items, two workers, a fan-out per supplier, one
reduce that waits for its approval (a file dropped into the store), the right prices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.pricelist_setup import (
    expected_price_list,
    read_price_list,
    worker_env,
    write_items,
)
from tests.procs import Processes, base_env, count_files, job_files


@pytest.mark.slow
def test_ten_thousand_items_make_the_expected_price_list(procs: Processes, tmp_path: Path,
                                                         suppliers: dict[str, str]) -> None:
    items = write_items(str(tmp_path / "items.csv"), 10_000)
    daemon = procs.daemon()
    for _ in range(2):
        procs.worker(daemon, QUEUES, "pricelist.tasks:handle", concurrency=8,
                     env=worker_env(suppliers))
    batch = submit_items(daemon.root, str(tmp_path / "items.csv"))
    approve_when_waiting(daemon.root, batch)
    wait_for(lambda: count_files(daemon.root, "pricelist", "done") == 1, timeout=600,
             interval=0.5, message="the price list")
    check_price_list(daemon.root, batch, items)


QUEUES = ["price", "quote", "pricelist"]


def approve_when_waiting(root: str, batch: str, timeout: float = 600) -> None:
    """Wait until the price list waits for its approval, with its draft written, then drop
    the approval file into the store."""
    reduce_id = f"{batch}.reduce"
    wait_for(lambda: (Path(root) / "pricelist" / "waiting" / f"{reduce_id}.json").exists(),
             timeout=timeout, interval=0.2, message="the price list to wait for its approval")
    staged = Path(root) / "approval.tmp"
    staged.write_text('{"by": "test"}')
    os.rename(staged, Path(root) / "pricelist" / "signals" / f"{reduce_id}.approved.json")


def submit_items(root: str, path: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ckptd", "--root", root, "submit-file",
                             "price", path, "--chunk", "50", "--then", "pricelist"],
                            capture_output=True, text=True, env=base_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def check_price_list(root: str, batch: str, items: list[dict[str, str]]) -> None:
    done = job_files(root, "pricelist", "done")
    assert list(done) == [f"{batch}.reduce"], "exactly one reduce job"
    result = done[f"{batch}.reduce"]["result"]
    assert result["failed_jobs"] == [] and result["approved"] == {"by": "test"}
    name = os.path.basename(result["location"])
    text = (Path(root) / "pricelist" / "outputs" / name).read_text()
    assert read_price_list(text) == expected_price_list(items)
    chunks = (len(items) + 49) // 50
    assert count_files(root, "price", "done") == chunks
    assert count_files(root, "quote", "done") == 3 * chunks, "one quote job per supplier"
