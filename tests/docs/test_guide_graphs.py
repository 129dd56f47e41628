"""docs/guide/graphs.md runs as written: its handlers, the daemon and worker it starts, the
submits with parents, the spawns, the batch, the parks woken by the CLI, the client and a file
dropped in, and its settings (the README's runner, :mod:`tests.docs.test_readme`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.docs.shell import Scratch
from tests.docs.test_readme import _read_toml, _run_python, blocks, commands

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "graphs.md"


def test_the_graphs_guide_runs_as_written(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    ran = {"sh": 0, "python": 0, "toml": 0}
    try:
        for block in blocks(GUIDE.read_text()):
            where = f"docs/guide/graphs.md line {block.line}"
            if block.lang == "sh":
                for command in commands(block):
                    scratch.run(command)
                    ran["sh"] += 1
            elif block.lang == "python":
                _run_python(scratch, block, where)
                ran["python"] += 1
            elif block.lang == "toml":
                _read_toml(scratch, block, where)
                ran["toml"] += 1
            else:
                assert block.lang == "text", f"{where}: a block in {block.lang!r}"
        assert ran == {"sh": 16, "python": 3, "toml": 1}, ran
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
