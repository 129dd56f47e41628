"""Logs: text for people (no timestamps of our own under systemd), JSON lines on request,
for the daemon and for workers alike."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from ckptd.core import logs
from tests.helpers import wait_for
from tests.procs import Processes


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_text_has_no_timestamp_only_when_stderr_is_the_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: object) -> None:
    with open(tmp_path / "stderr.txt", "w") as stream:
        monkeypatch.setattr("sys.stderr", stream)
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert logs.under_systemd()
        logs.configure("info", "auto")
        logging.getLogger("ckptd.test").info("moved", extra={"fields": {"id": "a b"}})
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino + 1}")
        assert not logs.under_systemd(), "inherited from a parent, but stderr goes elsewhere"
        logs.configure("info", "text")
        logging.getLogger("ckptd.test").info("again")
        logs.configure("info", "json")
        logging.getLogger("ckptd.test").info("shipped", extra={"fields": {"queue": "q"}})
    journal, stamped, shipped = (tmp_path / "stderr.txt").read_text().splitlines()
    assert journal == 'INFO ckptd.test: moved id="a b"'
    assert stamped.endswith("INFO ckptd.test: again") and stamped[:4].isdigit()
    entry = json.loads(shipped)
    assert entry["msg"] == "shipped" and entry["queue"] == "q" and entry["level"] == "info"


def test_daemon_and_worker_both_write_json_lines(procs: Processes) -> None:
    daemon = procs.daemon(log_format="json")
    worker = procs.worker(daemon, "j", "echo", extra=["--log-format", "json"])
    with daemon.client() as client:
        job_id = client.submit("j", {"x": 1})
        assert client.wait("j", job_id, timeout=30) == "done"
    wait_for(lambda: "serving" in worker.log(), timeout=10, message="the worker's first line")
    for text in (daemon.log(), worker.log()):
        lines = [line for line in text.splitlines() if line and not line.startswith("---")]
        assert lines and all(json.loads(line)["ts"] > 0 for line in lines), text
    moves = [json.loads(line) for line in daemon.log().splitlines() if job_id in line]
    assert {(m.get("from"), m.get("to")) for m in moves} >= {("pending", "claimed"),
                                                             ("claimed", "done")}
