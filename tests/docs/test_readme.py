"""The README's code blocks run as written, top to bottom (issue 13, "examples are tests").

Every ``sh`` block is run line by line (in a block with ``$`` prompts, the prompted lines;
the others are shown output), every ``python`` block is run (or, when its first line names
a module file, ``# tasks.py``, written there and imported, for the workers that name it),
and every ``toml`` block is read as settings (and written where its first line says, for the
commands that use it). :mod:`tests.docs.shell` says what is substituted: ports, the daemon's
addresses, system paths, example ids; ``scp`` between machines becomes a local copy. The
few lines that cannot run inside a test are listed in :data:`NOT_RUN`, each with the reason,
and must still be in the README.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ckptd.core.config import load_settings
from tests.docs.shell import Scratch

README = Path(__file__).resolve().parents[2] / "README.md"

NOT_RUN = {
    "make demo": "runs the worked example in the checkout (17 s, writes .demo/): by hand",
    "make test": "is this test suite",
    "python3 -m venv .venv && .venv/bin/pip install .": "how this environment was made",
}
# scp from one machine to another becomes a copy on this one (a no-op when the "two
# machines" share the file, as they do in one scratch folder).
SCP = ('scp() { local src="${1#*:}" dst="${2#*:}"; [ -d "$dst" ] && dst="$dst/$(basename '
       '"$src")"; [ "$(realpath -m "$src")" = "$(realpath -m "$dst")" ] || cp "$src" "$dst"; }; ')
INPUTS = {
    "item.json": '{"sku": "B-2", "qty": 1}\n',
    "items.csv": "sku,name\nA-1,bolt\nB-2,nut\nC-3,washer\n",
}


@dataclass
class Block:
    """A fenced code block of the README."""

    lang: str
    text: str
    line: int  # where it starts in the README


def blocks(text: str) -> list[Block]:
    found = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        found.append(Block(match.group(1), match.group(2), text[:match.start()].count("\n") + 1))
    return found


def commands(block: Block) -> list[str]:
    """The command lines of a shell block (continuations joined)."""
    lines = block.text.splitlines()
    if any(line.startswith("$ ") for line in lines):
        return [line[2:] for line in lines if line.startswith("$ ")]
    found: list[str] = []
    pending = ""
    for line in lines:
        if pending:
            line = pending + " " + line.strip()
            pending = ""
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1].rstrip()
            continue
        if line.strip() and not line.strip().startswith("#"):
            found.append(line.strip())
    return found


def _module_name(block: Block) -> str | None:
    first = block.text.splitlines()[0] if block.text else ""
    match = re.fullmatch(r"# (\w+)\.py", first.strip())
    return match.group(1) if match else None


def _toml_path(block: Block) -> str | None:
    first = block.text.splitlines()[0] if block.text else ""
    match = re.fullmatch(r"# (/\S+\.toml)", first.strip())
    return match.group(1) if match else None


def test_the_readme_names_only_lines_it_has_as_not_run() -> None:
    text = README.read_text()
    for line in NOT_RUN:
        assert line in text, f"NOT_RUN names {line!r}, which the README no longer has"


@pytest.mark.slow
def test_the_readmes_code_blocks_run_as_written(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    for name, text in INPUTS.items():
        (tmp_path / name).write_text(text)
    ran = {"sh": 0, "python": 0, "toml": 0}
    try:
        for block in blocks(README.read_text()):
            where = f"README.md line {block.line}"
            if block.lang == "sh":
                for command in commands(block):
                    if any(command.startswith(skip) for skip in NOT_RUN):
                        continue
                    out = scratch.run(SCP + command if command.startswith("scp ") else command)
                    ran["sh"] += 1
                    if "echo all done" in command:
                        assert "all done" in out, where
            elif block.lang == "python":
                _run_python(scratch, block, where)
                ran["python"] += 1
            elif block.lang == "toml":
                _read_toml(scratch, block, where)
                ran["toml"] += 1
            else:
                assert block.lang == "", f"{where}: a block in {block.lang!r}, which no one runs"
        assert ran["sh"] >= 30 and ran["python"] >= 3 and ran["toml"] >= 3, ran
        data = tmp_path / "data"
        for name in ("order-43", "order-44"):  # the files written by hand became jobs
            job = json.loads((data / "price/done" / f"{name}.json").read_text())
            assert job["id"] == name and job["result"] == {"priced": 1}
        assert json.loads((data / "price/done/order-43.json").read_text())["max_attempts"] == 5
    finally:
        codes = scratch.stop_all()
    daemon = codes[-1]
    assert "serve" in daemon[0] and daemon[1] == 0, codes


def _run_python(scratch: Scratch, block: Block, where: str) -> None:
    code = scratch.substitute(block.text)
    module = _module_name(block)
    if module is not None:  # a handler module: written where the workers run, then imported
        (scratch.dir / f"{module}.py").write_text(code)
        code = f"import {module}\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=scratch.dir, env=scratch.env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{where}:\n{done.stdout}\n{done.stderr}"


def _read_toml(scratch: Scratch, block: Block, where: str) -> None:
    path = _toml_path(block)
    target = Path(scratch.substitute(path)) if path else scratch.dir / f"block{block.line}.toml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(scratch.substitute(block.text))
    load_settings(str(target), env={})  # raises ConfigError saying what is wrong
