"""``ckptd explain`` on a claimed, a delayed-for-retry, a failed and a done job."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import wait_for
from tests.procs import Processes, job_files, read_lines
from tests.telemetry.helpers import ckptd


def explain(*args: str) -> str:
    result = ckptd(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_explain_says_why_each_job_is_where_it_is(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    # Retries wait an hour, so a job that failed once stays delayed while we look at it.
    daemon = procs.daemon(lease="30s", heartbeat="0.5s", backoff_base="1h", backoff_cap="2h")
    slow = procs.worker(daemon, "long", "steps", name="stepper", env={"TEST_LOG": log})
    procs.worker(daemon, "r", "flaky", name="flaker")
    root = daemon.root
    with daemon.client() as client:
        claimed = client.submit("long", {"steps": 2000, "sleep": 0.05})
        delayed = client.submit("r", {"fail": 5}, max_attempts=3, batch="b7")
        failed = client.submit("r", {"fail": 5}, max_attempts=1)
        done = client.submit("r", {"fail": 0})
        assert client.wait("r", failed, timeout=30) == "failed"
        assert client.wait("r", done, timeout=30) == "done"
        wait_for(lambda: job_files(root, "r", "pending").get(delayed, {}).get("attempts") == 1,
                 timeout=30, message="the first attempt to fail")
        wait_for(lambda: sum(1 for line in read_lines(log) if line.startswith("step")) >= 3,
                 timeout=30, message="a few checkpoints")
        wait_for(lambda: (client.show("long", claimed)["lease"] or {}).get("progress"),
                 timeout=30, message="a progress report")
        wait_for(lambda: (client.show("long", claimed)["lease"] or {}).get("heartbeat_age_s")
                 is not None, timeout=30, message="a heartbeat")
    connect = ("--connect", daemon.control)
    bare = ("--root", root)

    text = explain(*connect, "explain", "long", claimed)
    for fact in ("is CLAIMED", "Attempt 1 of 3 is running; 2 attempt(s) left",
                 "Worker stepper has it since", "Its lease is 30.0s", "runs out in",
                 "Last heartbeat", "Last progress: ", "/2000", "Latest checkpoint saved at",
                 "by attempt 1"):
        assert fact in text, (fact, text)
    text = explain(*bare, "explain", "long", claimed)
    assert "is CLAIMED" in text and "add --connect" in text and "Worker" not in text

    for args in (connect, bare):
        text = explain(*args, "explain", "r", delayed)
        for fact in ("is PENDING", "in batch b7", "It has used 1 of 3 attempts; 2 left",
                     "waits for its retry", "attempt 2) not before", "Last error (attempt 1",
                     "on worker flaker", "flaky failure on attempt 1", "Traceback",
                     "History: attempt 1 error on flaker"):
            assert fact in text, (fact, text)

        text = explain(*args, "explain", "r", failed)
        for fact in ("is FAILED", "it used all 1 attempts", "RuntimeError",
                     "flaky failure on attempt 1", "    Traceback (most recent call last)",
                     f"ckptd retry r {failed}"):
            assert fact in text, (fact, text)

        text = explain(*args, "explain", "r", done)
        for fact in ("is DONE", "succeeded on attempt 1 of 3", "by worker flaker",
                     "Lead time", "cycle time", 'Result: {"attempt": 1}'):
            assert fact in text, (fact, text)

    as_json = json.loads(explain(*connect, "explain", "long", claimed, "--json"))
    assert as_json["state"] == "claimed" and as_json["lease"]["worker"] == "stepper"
    assert any("CLAIMED" in s for s in as_json["sentences"])
    missing = ckptd(*connect, "explain", "r", "no-such-job")
    assert missing.returncode == 3 and "no job" in missing.stderr
    slow.kill()  # its job would take 100 s to finish on SIGTERM
    assert os.path.exists(f"{root}/long/claimed/{claimed}.json")
