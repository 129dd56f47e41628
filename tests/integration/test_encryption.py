"""Encryption at rest with real daemons and workers: a marker in 1,000 payloads, results and
checkpoints is in no file of the store; jobs sealed under an old key run after a rotation; a
wrong or missing key fails the attempt with a clear error and keeps the job, which runs once
the key is there; a unique queue dedups sealed payloads by their keyed hash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ckptd import Client
from ckptd.codec.crypto import new_key_line, parse_keys
from ckptd.core import dedup
from tests.integration.worker_helpers import config_file, wait_for_workers
from tests.procs import REPO, Processes, base_env, job_files

Q = "vault"
MARKER = "MARKER-7f3a9c-do-not-leak"


def files_holding(root: str, needle: bytes) -> list[str]:
    """Every file under ``root`` whose bytes hold ``needle``."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                if needle in handle.read():
                    found.append(os.path.relpath(path, root))
    return found


def _run_marked_jobs(procs: Processes, tmp_path: Path, keys_file: Path | None) -> str:
    """1,000 jobs whose payloads, results and checkpoints hold the marker (some as blobs,
    half of them failed with their checkpoint kept); return the store's root."""
    env = {"CKPTD_ENCRYPTION_KEY_FILE": str(keys_file)} if keys_file else {}
    daemon = procs.daemon(blob_threshold="4KiB")
    procs.worker(daemon, Q, "extras_handlers:secret_or_fail", concurrency=4, env=env)
    wait_for_workers(daemon)
    keys = parse_keys(keys_file.read_text(), str(keys_file)) if keys_file else None
    pad = "x" * 6000  # over the blob threshold: a payload blob and a result blob
    payloads = [{"marker": MARKER, "n": n, "fail": n % 2 == 1,
                 **({"pad": pad} if n % 100 == 0 else {})} for n in range(1000)]
    with Client(daemon.control, timeout=30, keys=keys) as client:
        ids = []
        for start in range(0, 1000, 250):
            ids += client.submit_many(Q, payloads[start:start + 250])
        answer = client.wait_many(Q, ids, timeout=300)
        assert not answer.get("timed_out")
        if keys is not None:
            assert client.result(Q, ids[0])["marker"] == MARKER  # opened with the keys
    done, failed = job_files(daemon.root, Q, "done"), job_files(daemon.root, Q, "failed")
    assert len(done) == 500 and len(failed) == 500
    assert len(os.listdir(Path(daemon.root) / Q / "state")) == 500  # the failed ones' kept
    assert any(n.endswith(".payload") for n in os.listdir(Path(daemon.root) / Q / "blobs"))
    assert any(n.endswith(".result") for n in os.listdir(Path(daemon.root) / Q / "blobs"))
    return daemon.root


def test_a_marker_in_1000_sealed_jobs_is_in_no_file_of_the_store(procs: Processes,
                                                                 tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(new_key_line("k1") + "\n")
    root = _run_marked_jobs(procs, tmp_path, keys_file)
    assert files_holding(root, MARKER.encode()) == []
    # The first done job whose payload and result are inline (1 in 50 went to blobs).
    job = next(j for j in job_files(root, Q, "done").values()
               if isinstance(j.get("payload"), dict) and isinstance(j.get("result"), dict))
    assert job["payload"]["kid"] == "k1" and job["result"]["kid"] == "k1"


def test_negative_control_without_keys_the_marker_is_everywhere(procs: Processes,
                                                                tmp_path: Path) -> None:
    root = _run_marked_jobs(procs, tmp_path, None)
    found = files_holding(root, MARKER.encode())
    assert any("/done/" in f for f in found) and any("/state/" in f for f in found)
    assert any("/blobs/" in f for f in found)


def _ckptd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ckptd", *args], capture_output=True,
                          text=True, env=base_env(**(env or {})), cwd=REPO, timeout=60)


def test_after_a_rotation_jobs_sealed_under_the_old_key_still_run(procs: Processes,
                                                                  tmp_path: Path) -> None:
    old, new = new_key_line("k1"), new_key_line("k2")
    daemon = procs.daemon()
    with Client(daemon.control, keys=parse_keys(old, "old")) as client:
        ids = client.submit_many(Q, [{"marker": MARKER, "n": n} for n in range(5)])
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{new}\n{old}\n")  # rotated: k2 seals, k1 still opens
    procs.worker(daemon, Q, "extras_handlers:secret",
                 env={"CKPTD_ENCRYPTION_KEY_FILE": str(keys_file)})
    rotated = parse_keys(keys_file.read_text(), "rotated")
    with Client(daemon.control, keys=rotated) as client:
        client.wait_many(Q, ids, timeout=60)
        assert [client.result(Q, i)["marker"] for i in ids] == [MARKER] * 5
        fresh = client.submit(Q, {"marker": MARKER})
        assert client.wait(Q, fresh, timeout=60) == "done"
    done = job_files(daemon.root, Q, "done")
    assert {done[i]["payload"]["kid"] for i in ids} == {"k1"}
    assert {done[i]["result"]["kid"] for i in ids} == {"k2"}
    assert done[fresh]["payload"]["kid"] == "k2"
    shown = _ckptd("--root", daemon.root, "show", "--decrypt", "--json", Q, ids[0],
                   env={"CKPTD_ENCRYPTION_KEY_FILE": str(keys_file)})
    info = json.loads(shown.stdout)
    assert info["job"]["payload"]["marker"] == MARKER
    assert info["job"]["result"]["marker"] == MARKER
    assert "payload: sealed with key 'k1', opened here" in info["sealed"]


def test_a_wrong_key_is_a_clear_error_and_the_job_is_kept(procs: Processes,
                                                          tmp_path: Path) -> None:
    right = new_key_line("k1")
    wrong_file, other_file, right_file = tmp_path / "wrong", tmp_path / "other", \
        tmp_path / "right"
    wrong_file.write_text(new_key_line("k1"))  # the same id, another key
    other_file.write_text(new_key_line("k9"))
    right_file.write_text(right)
    daemon = procs.daemon(backoff_base="0.05s")
    worker = procs.worker(daemon, Q, "extras_handlers:secret",
                          env={"CKPTD_ENCRYPTION_KEY_FILE": str(wrong_file)})
    with Client(daemon.control, keys=parse_keys(right, "right")) as client:
        job_id = client.submit(Q, {"marker": MARKER}, max_attempts=2)
        assert client.wait(Q, job_id, timeout=60) == "failed"
        failed = job_files(daemon.root, Q, "failed")[job_id]
        assert failed["last_error"]["type"] == "DecryptError"
        assert "key 'k1' here is not the key that sealed it" in failed["last_error"]["message"]
        assert failed["payload"]["kid"] == "k1"  # kept as it was sealed
        worker.terminate()
        other = procs.worker(daemon, Q, "extras_handlers:secret",
                             env={"CKPTD_ENCRYPTION_KEY_FILE": str(other_file)})
        client.retry(Q, [job_id], attempts=1)
        assert client.wait(Q, job_id, timeout=60) == "failed"
        message = job_files(daemon.root, Q, "failed")[job_id]["last_error"]["message"]
        assert "sealed with key 'k1', which is not among this process's keys (k9)" in message
        explained = _ckptd("--root", daemon.root, "explain", Q, job_id)
        assert "Payload: sealed with key 'k1'; no keys here to open it" in explained.stdout
        other.terminate()
        procs.worker(daemon, Q, "extras_handlers:secret",
                     env={"CKPTD_ENCRYPTION_KEY_FILE": str(right_file)})
        client.retry(Q, [job_id])
        assert client.wait(Q, job_id, timeout=60) == "done"
        assert client.result(Q, job_id)["marker"] == MARKER


def test_a_unique_queue_dedups_sealed_payloads_by_their_keyed_hash(procs: Processes,
                                                                    tmp_path: Path) -> None:
    env = config_file(tmp_path, f'[queues.{Q}]\nunique = "payload"\n')
    daemon = procs.daemon(env=env)
    keys = parse_keys(new_key_line("k1"), "test")
    with Client(daemon.control, keys=keys) as client:
        first = client.submit(Q, {"marker": MARKER})
        again = client.submit(Q, {"marker": MARKER})
        other = client.submit(Q, {"marker": MARKER + "!"})
    assert first == again != other
    assert first == keys.payload_key({"marker": MARKER})
    assert first != dedup.payload_key({"marker": MARKER})  # not the plain hash


def test_a_pipelines_next_stage_opens_the_sealed_result_it_gets(procs: Processes,
                                                                tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(new_key_line("k1"))
    env = config_file(tmp_path, f'[queues.{Q}]\nnext = "{Q}2"\n')
    daemon = procs.daemon(env=env)
    procs.worker(daemon, [Q, f"{Q}2"], "extras_handlers:secret",
                 env={"CKPTD_ENCRYPTION_KEY_FILE": str(keys_file)})
    keys = parse_keys(keys_file.read_text(), "keys")
    with Client(daemon.control, keys=keys) as client:
        job_id = client.submit(Q, {"marker": MARKER})
        assert client.wait(Q, job_id, timeout=60) == "done"
        client.wait_many(f"{Q}2", None, timeout=60)
    (second,) = job_files(daemon.root, f"{Q}2", "done").values()
    assert second["payload"]["kid"] == "k1"  # the first stage's sealed result
    assert keys.open(second["result"], "result")["marker"] == MARKER
