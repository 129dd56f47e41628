"""The worked example end to end: 10,000 items, two workers, one reduce, the right prices."""

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
        procs.worker(daemon, ["price", "pricelist"], "pricelist.tasks:handle", concurrency=8,
                     env=worker_env(suppliers))
    batch = submit_items(daemon.root, str(tmp_path / "items.csv"))
    wait_for(lambda: count_files(daemon.root, "pricelist", "done") == 1, timeout=600,
             interval=0.5, message="the price list")
    check_price_list(daemon.root, batch, items)


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
    assert result["failed_jobs"] == []
    name = os.path.basename(result["location"])
    text = (Path(root) / "pricelist" / "outputs" / name).read_text()
    assert read_price_list(text) == expected_price_list(items)
    assert count_files(root, "price", "done") == (len(items) + 49) // 50
