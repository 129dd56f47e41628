"""Encryption at rest and jobs' own logs on a real S3 server (SeaweedFS): a marker in 1,000
sealed payloads, results and checkpoints is in no object of the bucket; a job's log is kept
as pieces, read back whole by ``ckptd logs``, and removed by retention."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ckptd import Client
from ckptd.codec.crypto import new_key_line, parse_keys
from tests.bucket.helpers import prefix_of
from tests.bucket.test_bucket_daemon import FAST
from tests.helpers import wait_for
from tests.integration.worker_helpers import wait_for_workers
from tests.procs import REPO, Processes, base_env
from tests.s3server import SeaweedServer

Q = "vault"
MARKER = "MARKER-b0c3e1-do-not-leak"


def objects_holding(server: SeaweedServer, prefix: str, needle: bytes) -> tuple[int, list[str]]:
    """How many objects are under ``prefix``, and the keys of those that hold ``needle``."""
    client = server.client(timeout=30)
    keys = server.keys(prefix)
    try:
        found = [k for k in keys if needle in
                 client.get_object(Bucket=server.bucket, Key=k)["Body"].read()]
    finally:
        client.close()
    return len(keys), found


def test_a_marker_in_1000_sealed_jobs_is_in_no_object_of_the_bucket(
        procs: Processes, s3_server: SeaweedServer, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(new_key_line("k1") + "\n")
    url = s3_server.url()
    daemon = procs.daemon(root=url, env=s3_server.env(), blob_threshold="4KiB", **FAST)
    procs.worker(daemon, Q, "extras_handlers:secret_or_fail", concurrency=8,
                 env={**s3_server.env(), "CKPTD_ENCRYPTION_KEY_FILE": str(keys_file)})
    wait_for_workers(daemon)
    keys = parse_keys(keys_file.read_text(), "keys")
    payloads = [{"marker": MARKER, "n": n, "fail": n % 2 == 1,
                 **({"pad": "x" * 6000} if n % 100 == 0 else {})} for n in range(1000)]
    with Client(daemon.control, timeout=60, keys=keys) as client:
        ids = []
        for start in range(0, 1000, 250):
            ids += client.submit_many(Q, payloads[start:start + 250])
        assert not client.wait_many(Q, ids, timeout=600).get("timed_out")
        assert client.result(Q, ids[0])["marker"] == MARKER
    count, found = objects_holding(s3_server, prefix_of(url) + "/", MARKER.encode())
    assert found == []
    keys_seen = s3_server.keys(prefix_of(url) + f"/{Q}/")
    assert sum("/state/" in k for k in keys_seen) == 500  # the failed jobs' checkpoints
    assert any(k.endswith(".payload") for k in keys_seen)
    assert any(k.endswith(".result") for k in keys_seen)
    assert count >= 1500  # 1,000 job files, 500 checkpoints, the blobs


def test_a_jobs_log_is_kept_in_pieces_read_whole_and_removed_by_retention(
        procs: Processes, s3_server: SeaweedServer) -> None:
    url = s3_server.url()
    daemon = procs.daemon(root=url, env=s3_server.env(), keep_done="2s",
                          retention_interval="0.5s", **FAST)
    procs.worker(daemon, Q, "extras_handlers:chatty", env=s3_server.env())
    wait_for_workers(daemon)
    with daemon.client(timeout=30) as client:
        job_id = client.submit(Q, {"ticks": 4, "every": 0.3})
        assert client.wait(Q, job_id, timeout=60) == "done"
    logs = f"{prefix_of(url)}/{Q}/logs/{job_id}/"
    pieces = wait_for(lambda: [k for k in s3_server.keys(logs)
                               if k.startswith(logs + "1/")] or None, timeout=20)
    assert len(pieces) >= 2, pieces  # sent while it ran, not only at its end
    shown = subprocess.run([sys.executable, "-m", "ckptd", "--root", url, "logs", Q, job_id],
                           capture_output=True, text=True, cwd=REPO, timeout=60,
                           env=base_env(**s3_server.env()))
    assert shown.returncode == 0, shown.stderr
    assert [line.split(" INFO job: ")[1] for line in shown.stdout.splitlines()
            if " INFO job: tick" in line] == [f"tick {n}" for n in range(4)]
    wait_for(lambda: not s3_server.keys(logs), timeout=60,
             message="retention to remove the log's pieces")
