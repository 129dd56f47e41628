"""docs/guide/graphs.md runs as written: its handlers, the daemon and worker it starts, the
submits with parents, the spawns, the batch, the parks woken by the CLI, the client and a file
dropped in, and its settings (the README's runner, :mod:`tests.docs.test_readme`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.docs.shell import Scratch
from tests.docs.test_readme import Block, _read_toml, _run_python, blocks, commands

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "graphs.md"


def _run_sh(scratch: Scratch, block: Block, where: str) -> None:
    for command in commands(block):
        scratch.run(command)


RUNNERS: dict[str, Callable[[Scratch, Block, str], None]] = {
    "sh": _run_sh, "python": _run_python, "toml": _read_toml}


def test_the_graphs_guide_runs_as_written(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    ran: Counter[str] = Counter()
    try:
        for block in blocks(GUIDE.read_text()):
            if block.lang != "text":  # text blocks show output and files
                RUNNERS[block.lang](scratch, block, f"docs/guide/graphs.md line {block.line}")
                ran[block.lang] += 1
        assert ran == {"sh": 3, "python": 3, "toml": 1}, ran  # blocks
        done = tmp_path / "data"
        join = json.loads((done / "join/done/join-1.json").read_text())
        assert join["woken"]["parents"] == {"split/part-1": "done", "split/part-2": "done"}
        fan = json.loads((done / "fan/done/fan-1.json").read_text())["result"]
        assert fan["gathered"] == {f"split/fan-1.part{n}": "done" for n in range(3)}
        for job_id, by in (("report-7", "ana"), ("report-8", "bob"), ("report-9", "carol")):
            result = json.loads((done / f"publish/done/{job_id}.json").read_text())["result"]
            assert result["approved"] == {"by": by}, result
    finally:
        codes = scratch.stop_all()
    assert codes[-1][1] == 0, codes
