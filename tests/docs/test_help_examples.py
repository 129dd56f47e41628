"""Every example printed by every ``--help`` runs as written (issue 13, "examples are tests").

The examples are read from the help text itself and run in a scratch folder with real
processes (:mod:`tests.docs.shell` says what is substituted: ports, addresses, system paths,
example ids). They run command by command in the order a newcomer would: keys, daemons,
workers, then the store commands against the store of a running daemon. The few inputs the
examples name (``item.json``, ``items.csv``, the handlers ``tasks:price`` and the async
``tasks:fetch``) are written first,
and the jobs that ``retry`` and ``cancel`` act on are made ready just before them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ckptd.cli.main import cli
from tests.docs.shell import Scratch, subcommand
from tests.helpers import wait_for

ORDER = ("keygen", "encryption-key", "serve", "worker", "submit", "submit-file", "status",
         "ls", "show", "explain", "logs", "wait", "signal", "graph", "retry", "cancel", "move",
         "replay", "purge", "fsck", "doctor", "schedules", "limit", "pause", "resume",
         "console-user")

TASKS = '''\
from ckptd import AsyncJob, Fail, Job


def price(job: Job) -> dict:
    if isinstance(job.payload, dict) and job.payload.get("fail"):
        raise Fail("this example job was asked to fail")
    return {"priced": job.payload}


async def fetch(job: AsyncJob) -> dict:
    return {"fetched": job.payload}
'''
INPUTS = {
    "tasks.py": TASKS,
    "item.json": '{"sku": "B-2", "qty": 1}\n',
    "items.csv": "sku,name\nA-1,bolt\nB-2,nut\nC-3,washer\n",
    "logs.jsonl": '{"line": 1}\n{"line": 2}\n',
    "ids.txt": "id-1\nid-2\nid-3\n",
}


def help_text(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="ckptd",
                                terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def examples(text: str) -> list[str]:
    """The lines under "Examples:" (or "Example:") of a help text, as written."""
    lines = text.splitlines()
    heads = [n for n, line in enumerate(lines) if line.strip() in ("Examples:", "Example:")]
    assert len(heads) == 1, f"one Examples: block expected in:\n{text}"
    found = []
    for line in lines[heads[0] + 1:]:
        if not line.strip():
            break
        found.append(line.strip())
    return found


def test_help_shows_examples_as_written_one_per_line() -> None:
    """Item 6: the examples are not re-wrapped into one paragraph."""
    text = help_text("ls")
    assert "\n    ckptd ls price            # every job, with its state\n" in text
    assert examples(text) == ["ckptd ls price            # every job, with its state",
                              "ckptd ls price failed     # the ids in failed/, one per line",
                              "ckptd ls price pending    # in dispatch order: by priority, "
                              "then oldest first"]


def _failed_job(scratch: Scratch) -> str:
    job_id = scratch.run("""ckptd submit price '{"fail": true}' --max-attempts 1""").strip()
    wait_for(lambda: (scratch.dir / "ckptd-data/price/failed" / f"{job_id}.json").exists(),
             timeout=60, message="the job asked to fail to be in failed/")
    return job_id


def _pending_job(scratch: Scratch) -> str:
    return scratch.run("""ckptd submit price '{"sku": "later"}' --delay 1h""").strip()


@pytest.mark.slow
def test_every_example_of_every_help_runs(tmp_path: Path, request: pytest.FixtureRequest
                                          ) -> None:
    commands = sorted(cli.commands)  # type: ignore[attr-defined]
    assert sorted(ORDER) == commands, "a new command needs its place in ORDER"
    by_command: dict[str, list[str]] = {name: [] for name in ORDER}
    for source in [(), *[(name,) for name in commands]]:
        lines = examples(help_text(*source))
        assert lines, f"ckptd {' '.join(source)} --help has no example"
        for line in lines:
            name = subcommand(line)
            assert name in by_command, f"example {line!r} runs no ckptd command"
            by_command[name].append(line)
    for name in commands:
        assert by_command[name], f"no example runs ckptd {name}"

    scratch = Scratch(tmp_path)
    for name, text in INPUTS.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "etc/ckptd").mkdir(parents=True)
    (tmp_path / "etc/ckptd/ckptd.toml").write_text('root = "from-config"\n')
    bucket = "s3://bucket/q"
    if any(bucket in line for lines in by_command.values() for line in lines):
        try:
            server = request.getfixturevalue("s3_server")
        except pytest.skip.Exception:
            server = None  # no SeaweedFS here: the bucket example runs on a folder instead
        if server is not None:
            scratch.env.update(server.env())
            bucket_root = server.url()
        else:
            bucket_root = str(tmp_path / "bucket-q")
    try:
        for name in ORDER:
            for line in by_command[name]:
                pick = None
                if name == "retry" and "--all" not in line:
                    pick = {"price": [_failed_job(scratch)]}
                elif name in ("cancel", "move"):
                    pick = {"price": [_pending_job(scratch)]}
                scratch.run(line.replace(bucket, bucket_root), pick=pick)
            if name == "serve":  # the daemon the remaining examples talk to, on their store
                scratch.run("ckptd serve --root ckptd-data")
        status = json.loads(scratch.run("ckptd status --json"))["queues"]
        assert status["price"]["done"] >= 3 and status["reports"]["pending"] == 1
        assert os.path.exists(tmp_path / "etc/ckptd/keys/vm2.key_secret")
    finally:
        codes = scratch.stop_all()
    assert all(code == 0 for _, code in codes), codes
