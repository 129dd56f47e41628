"""Hooks with real daemons and workers: the worker's hooks run in every pool, where the
handler runs (the child process of --pool process), and a hook that raises changes no
job's outcome; the client's on_submit adds fields the handler sees as job.meta."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptd import Client
from tests.integration.extras_handlers import Broken, Tenant
from tests.integration.worker_helpers import records, wait_for_workers
from tests.procs import Processes, job_files

Q = "hooked"
HOOKS = "extras_handlers:Broken,extras_handlers:Recorder"


@pytest.mark.parametrize("pool", ["thread", "process", "async"])
def test_hooks_run_in_every_pool_and_one_that_raises_changes_nothing(
        procs: Processes, tmp_path: Path, pool: str) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon(backoff_base="0.05s")
    handler = "extras_handlers:outcome_async" if pool == "async" else "extras_handlers:outcome"
    worker = procs.worker(daemon, Q, handler, concurrency=2, extra=["--pool", pool],
                          env={"TEST_LOG": str(log), "CKPTD_HOOKS": HOOKS})
    wait_for_workers(daemon)
    with Client(daemon.control, timeout=10, hooks=[Broken(), Tenant()]) as client:
        ok = client.submit(Q, {"mode": "ok"})
        flaky = client.submit(Q, {"mode": "flaky"})
        fail = client.submit(Q, {"mode": "fail"})
        client.wait_many(Q, [ok, flaky, fail], timeout=60)
        assert client.result(Q, flaky) == {"attempt": 2, "n": None}
    done, failed = job_files(daemon.root, Q, "done"), job_files(daemon.root, Q, "failed")
    # The outcomes are those of the handler alone: Broken raised in every hook method.
    assert done[ok]["attempts"] == 1 and done[flaky]["attempts"] == 2 and fail in failed
    assert failed[fail]["attempts"] == 1 and failed[fail]["last_error"]["type"] == "Fail"
    # on_submit: Tenant's field is there, Broken's half-made change was undone.
    assert all(job["meta"] == {"tenant": "acme"} for job in [*done.values(), *failed.values()])
    assert {r[4] for r in records(log, "handler")} == {"acme"}

    def calls(event: str) -> list[tuple[str, int]]:
        return sorted((r[1], int(r[2])) for r in records(log, event))

    assert calls("before") == sorted([(ok, 1), (flaky, 1), (flaky, 2), (fail, 1)])
    assert calls("after") == sorted([(ok, 1), (flaky, 2)])
    assert calls("on_error") == sorted([(flaky, 1), (fail, 1)])
    assert calls("on_retry") == [(flaky, 1)]  # Fail is for good: no retry
    # Where they run: with the handler (in its child process, or as its task).
    handler_at = {(r[1], r[2]): r[3] for r in records(log, "handler")}
    for event in ("before", "after", "on_error", "on_retry"):
        for rec in records(log, event):
            assert rec[3] == handler_at[(rec[1], rec[2])], (event, rec)
    pids = {at.split(":")[0] for at in handler_at.values()}
    if pool == "process":
        assert str(worker.proc.pid) not in pids
    else:
        assert pids == {str(worker.proc.pid)}
    kinds = {at.split(":")[1] for at in handler_at.values()}
    assert kinds == ({"task"} if pool == "async" else {"thread"})
    text = worker.log()
    for method in ("before", "after", "on_error", "on_retry"):
        assert f"hook Broken.{method} raised" in text


def test_a_hook_named_in_the_config_that_cannot_be_loaded_stops_the_worker(
        procs: Processes, tmp_path: Path) -> None:
    daemon = procs.daemon()
    worker = procs.worker(daemon, Q, "extras_handlers:outcome",
                          env={"CKPTD_HOOKS": "extras_handlers:NoSuchHook"})
    assert worker.proc.wait(60) != 0
    assert "hook 'extras_handlers:NoSuchHook': extras_handlers has no 'NoSuchHook'" in \
        worker.log()
