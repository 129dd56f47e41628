"""Dedup by content with real processes: the same payload makes one job, in every scope."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ckptd.core.errors import CkptdError
from tests.integration.worker_helpers import config_file
from tests.procs import REPO, Processes, base_env, count_files

FOREVER, OPEN = "forever-q", "open-q"
CONFIG = (f'[queues.{FOREVER}]\nunique = "payload"\n\n'
          f'[queues.{OPEN}]\nunique = "payload"\nunique_scope = "open"\n')


def jobs_in(root: str, queue: str) -> int:
    return sum(count_files(root, queue, s) for s in ("pending", "claimed", "done", "failed"))


def submit_from_threads(daemon: object, queue: str, payload: dict[str, object]) -> set[str]:
    ids: list[str] = []
    lock = threading.Lock()

    def producer() -> None:
        with daemon.client() as client:  # type: ignore[attr-defined]
            for _ in range(25):
                job_id = client.submit(queue, payload)
                with lock:
                    ids.append(job_id)

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 100
    return set(ids)


@pytest.mark.parametrize("queue", [FOREVER, OPEN])
def test_the_same_payload_100_times_from_4_threads_is_one_job(procs: Processes,
                                                              tmp_path: Path,
                                                              queue: str) -> None:
    daemon = procs.daemon(env=config_file(tmp_path, CONFIG))
    payload = {"sku": "A-1", "list": [1, 2, 3]}
    ids = submit_from_threads(daemon, queue, payload)
    assert len(ids) == 1 and jobs_in(daemon.root, queue) == 1
    # Key order does not matter: the payload's canonical JSON is hashed.
    with daemon.client() as client:
        again = client.submit_job(queue, {"list": [1, 2, 3], "sku": "A-1"})
        assert again.id in ids and not again.created
        other = client.submit(queue, {"sku": "B-2"})
        assert other not in ids
        status = client.status(queue)["queues"][queue]
        assert status["unique"]["scope"] == ("open" if queue == OPEN else "forever")
        assert status["unique"]["hits"] >= 100
        with pytest.raises(CkptdError, match="makes ids from payloads"):
            client.submit(queue, payload, id="my-own-id")
    # The CLI on the store finds the same job (forever: its id; open: it is pending).
    done = subprocess.run([sys.executable, "-m", "ckptd", "--root", daemon.root, "submit",
                           queue, '{"sku": "A-1", "list": [1, 2, 3]}'], capture_output=True,
                          text=True, env=base_env(CKPTD_CONFIG=str(tmp_path / "ckptd.toml")),
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ids and "already existed" in done.stderr
    assert jobs_in(daemon.root, queue) == 2


def test_forever_finds_done_jobs_open_makes_a_new_one(procs: Processes, tmp_path: Path
                                                      ) -> None:
    daemon = procs.daemon(env=config_file(tmp_path, CONFIG))
    procs.worker(daemon, [FOREVER, OPEN], "echo", concurrency=2)
    with daemon.client() as client:
        first = {q: client.submit(q, {"work": 1}) for q in (FOREVER, OPEN)}
        for queue, job_id in first.items():
            assert client.wait(queue, job_id, timeout=30) == "done"
        later = {q: client.submit_job(q, {"work": 1}) for q in (FOREVER, OPEN)}
    assert later[FOREVER].id == first[FOREVER] and not later[FOREVER].created
    assert later[FOREVER].state == "done"  # a month later: still the one job
    assert later[OPEN].id != first[OPEN] and later[OPEN].created  # it ended: runs again
