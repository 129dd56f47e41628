"""submit-file, batches with their reduce job, and pipelines, with real processes."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.procs import Processes, base_env, count_files, job_files, read_lines


def submit_file(root: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ckptd", "--root", root, "submit-file", *args],
                            capture_output=True, text=True, env=base_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_file_becomes_a_batch_and_its_reduce_runs_once(procs: Processes, tmp_path: Path,
                                                        pool: str) -> None:
    """(In child processes too: records, checkpoints and results go through the worker.)"""
    log = str(tmp_path / "runs.log")
    data = tmp_path / "numbers.txt"
    data.write_text("".join(f"n {i}\n" for i in range(1, 1001)))
    daemon = procs.daemon()
    procs.worker(daemon, "sum", "count_records", extra=["--pool", pool],
                 env={"TEST_LOG": log, "CHECKPOINT_EVERY_RECORD": "1"})
    procs.worker(daemon, "total", "reduce_sum", extra=["--pool", pool], env={"TEST_LOG": log})
    batch = submit_file(daemon.root, "sum", str(data), "--chunk", "64", "--then", "total")
    reduce_id = f"{batch}.reduce"
    wait_for(lambda: count_files(daemon.root, "total", "done") == 1, timeout=60,
             message="the reduce job to finish")
    result = job_files(daemon.root, "total", "done")[reduce_id]["result"]
    assert result == {"sum": sum(range(1, 1001)), "count": 1000, "jobs": 16}
    records = collections.Counter(int(line.split()[4]) for line in read_lines(log)
                                  if line.startswith("record"))
    assert set(records) == set(range(1000)) and max(records.values()) == 1
    assert sum(1 for line in read_lines(log) if line.startswith("reduce")) == 1
    manifest = (Path(daemon.root) / "sum" / "batches" / f"{batch}.json").read_text()
    assert '"reduced"' in manifest
    # Submitting the same batch again makes nothing new and no second reduce.
    again = subprocess.run([sys.executable, "-m", "ckptd", "--root", daemon.root, "submit-file",
                            "sum", str(data), "--chunk", "64", "--then", "total",
                            "--batch", batch], capture_output=True, text=True,
                           env=base_env(), timeout=60)
    assert "(0 new" in again.stderr
    assert count_files(daemon.root, "total", "pending") == 0


def test_a_file_sent_through_the_daemon_becomes_the_same_batch(procs: Processes,
                                                               tmp_path: Path) -> None:
    """submit-file --connect: a producer without the store sends the file in parts."""
    from ckptd.client.client import Client
    from ckptd.core.errors import RemoteError
    from ckptd.wire.uploads import PART_BYTES

    log = str(tmp_path / "runs.log")
    data = tmp_path / "numbers.txt"
    numbers = range(1, 25_001)
    data.write_text("".join(f"{'x' * 90} {i}\n" for i in numbers))  # 2.4 MB: two parts
    assert data.stat().st_size > PART_BYTES
    daemon = procs.daemon()
    for _ in range(2):
        procs.worker(daemon, "sum", "count_records", concurrency=4)
    procs.worker(daemon, "total", "reduce_sum", env={"TEST_LOG": log})
    command = [sys.executable, "-m", "ckptd", "--connect", daemon.control, "submit-file", "sum",
               str(data), "--chunk", "500", "--then", "total"]
    sent = subprocess.run(command, capture_output=True, text=True, env=base_env(), timeout=120,
                          cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    batch = sent.stdout.strip()
    assert "25000 records in 50 jobs (50 new" in sent.stderr
    assert not (tmp_path / "ckptd-data").exists(), "nothing went to a default store here"
    source = Path(daemon.root) / "sum" / "blobs" / f"{batch}.source"
    assert source.read_bytes() == data.read_bytes()
    wait_for(lambda: count_files(daemon.root, "total", "done") == 1, timeout=120,
             message="the reduce job to finish")
    result = job_files(daemon.root, "total", "done")[f"{batch}.reduce"]["result"]
    assert result == {"sum": sum(numbers), "count": len(numbers), "jobs": 50}
    assert sum(1 for line in read_lines(log) if line.startswith("reduce")) == 1
    again = subprocess.run(command + ["--batch", batch], capture_output=True, text=True,
                           env=base_env(), timeout=120)
    assert again.returncode == 0 and "(0 new" in again.stderr, again.stderr
    # Bad parts get an error each and the daemon goes on.
    with Client(daemon.control, timeout=10) as client:
        for body, message in [
                ({"upload": "u1", "offset": 0, "data": "not base64!"}, "not valid base64"),
                ({"upload": "u2", "offset": 5, "data": ""}, "no upload"),
                ({"upload": "../x", "offset": 0, "data": ""}, "upload.upload has a bad value"),
                ({"upload": "u3", "offset": -1, "data": ""}, "upload.offset has a bad value")]:
            with pytest.raises(RemoteError, match=message):
                client.request("upload", body)
        with pytest.raises(RemoteError, match="no upload"):
            client.request("submit_file", {"upload": "nosuch", "size": 1, "queue": "sum",
                                           "format": "lines"})
        assert client.ping()
    assert count_files(daemon.root, "sum", "done") == 50


def test_a_three_stage_pipeline_hands_every_job_on_once(procs: Processes,
                                                       tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    config = tmp_path / "pipeline.toml"
    config.write_text('[queues.one]\nnext = "two"\n[queues.two]\nnext = "three"\n')
    daemon = procs.daemon(env={"CKPTD_CONFIG": str(config)})
    for _ in range(2):
        procs.worker(daemon, ["one", "two", "three"], "stage", prefetch=4,
                     env={"TEST_LOG": log})
    with daemon.client() as client:
        ids = []
        for chunk in range(10):
            ids += client.submit_many("one", [{"n": chunk * 100 + i, "path": []}
                                              for i in range(100)])
    wait_for(lambda: count_files(daemon.root, "three", "done") == 1000, timeout=120,
             message="all jobs at the last stage")
    last = job_files(daemon.root, "three", "done")
    assert set(last) == set(ids)
    for job_id, job in last.items():
        assert job["result"]["path"] == ["one", "two", "three"]
        assert job["lineage"] == [f"one/{job_id}", f"two/{job_id}"]
    runs = collections.Counter((line.split()[1], line.split()[2]) for line in read_lines(log))
    assert len(runs) == 3000 and set(runs.values()) == {1}, "each job ran once per stage"
    assert job_files(daemon.root, "one", "done")[ids[0]]["next"] == {"queue": "two",
                                                                     "id": ids[0]}


def test_a_worker_killed_mid_chunk_resumes_within_the_chunk(procs: Processes,
                                                           tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    data = tmp_path / "numbers.txt"
    data.write_text("".join(f"n {i}\n" for i in range(1, 101)))
    daemon = procs.daemon(lease="2s", heartbeat="0.3s", backoff_base="0.1s")
    env = {"TEST_LOG": log, "CHECKPOINT_EVERY_RECORD": "1", "RECORD_SLEEP": "0.02"}
    first = procs.worker(daemon, "sum", "count_records", env=env)
    batch = submit_file(daemon.root, "sum", str(data), "--chunk", "100")
    wait_for(lambda: sum(1 for line in read_lines(log) if line.startswith("record")) >= 30,
             timeout=30, message="30 records done by the first worker")
    first.kill()
    procs.worker(daemon, "sum", "count_records", env=env)
    wait_for(lambda: count_files(daemon.root, "sum", "done") == 1, timeout=60,
             message="the chunk to finish")
    records = collections.Counter(int(line.split()[4]) for line in read_lines(log)
                                  if line.startswith("record"))
    assert set(records) == set(range(100))
    twice = sum(n - 1 for n in records.values())
    print(f"\nrecords processed twice after one kill mid-chunk: {twice} of 100")
    assert twice <= 1, "the second attempt resumed at the checkpoint, not at the first record"
    job = job_files(daemon.root, "sum", "done")[f"{batch}.000000"]
    assert job["result"] == {"sum": sum(range(1, 101)), "count": 100} and job["attempts"] == 2
