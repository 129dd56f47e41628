"""The code blocks of a documentation page, run as written, top to bottom (issue 13,
"examples are tests"; issue 20, every page of the guide).

Every ``sh`` block is run line by line (in a block with ``$`` prompts, the prompted lines;
the others are shown output), every ``python`` block is run (or, when its first line names
a module file, ``# tasks.py``, written there and imported, for the workers that name it),
and every ``toml`` block is read as settings (and written where its first line says, for the
commands that use it). :mod:`tests.docs.shell` says what is substituted: ports, the daemon's
addresses, system paths, example ids; ``scp`` between machines becomes a local copy.

Blocks fenced ``text`` (or with no language: a folder tree, a sample of output) are shown,
not run: a systemd session, a command on another machine. The few single lines that cannot
run inside a test are listed in :data:`NOT_RUN`, each with the reason, and must still be on
some page.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ckptd.core.config import load_settings
from tests.docs.shell import Scratch

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
GUIDE = REPO / "docs" / "guide"
CONTRIBUTING = REPO / "docs" / "contributing.md"

NOT_RUN = {
    "make demo": "runs the worked example in the checkout (17 s, writes .demo/): by hand",
    "make demo-s3": "the worked example on a local S3 server (40 s, writes .demo/): by hand",
    "make test": "is this test suite",
    "python3 -m venv .venv && .venv/bin/pip install .": "how this environment was made",
    ". .venv/bin/activate": "this test already runs the venv's ckptd first on the PATH",
    "make .venv/.installed-stamp": "how this environment was made",
    "make lint": "CI runs it beside the tests (.ci/run)",
}
"""Lines of the pages that are not run, with the reason (matched at the start of a line)."""

SHOWN = ("text", "")
"""Languages of blocks that are shown, not run."""

# scp from one machine to another becomes a copy on this one (a no-op when the "two
# machines" share the file, as they do in one scratch folder).
SCP = ('scp() { local src="${1#*:}" dst="${2#*:}"; [ -d "$dst" ] && dst="$dst/$(basename '
       '"$src")"; [ "$(realpath -m "$src")" = "$(realpath -m "$dst")" ] || cp "$src" "$dst"; }; ')
INPUTS = {
    "item.json": '{"sku": "B-2", "qty": 1}\n',
    "items.csv": "sku,name\nA-1,bolt\nB-2,nut\nC-3,washer\n",
}
"""Files the pages name as inputs, written into every scratch folder first."""


@dataclass
class Block:
    """A fenced code block of a page."""

    lang: str
    text: str
    line: int  # where it starts in the page


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


def module_block(page: Path, module: str) -> Block:
    """The python block of ``page`` that is the module file ``# module.py``."""
    for block in blocks(page.read_text()):
        if block.lang == "python" and _module_name(block) == module:
            return block
    raise AssertionError(f"{page.name} has no python block that starts '# {module}.py'")


def _module_name(block: Block) -> str | None:
    first = block.text.splitlines()[0] if block.text else ""
    match = re.fullmatch(r"# (\w+)\.py", first.strip())
    return match.group(1) if match else None


def _toml_path(block: Block) -> str | None:
    first = block.text.splitlines()[0] if block.text else ""
    match = re.fullmatch(r"# (/\S+\.toml)", first.strip())
    return match.group(1) if match else None


def write_inputs(folder: Path) -> None:
    for name, text in INPUTS.items():
        (folder / name).write_text(text)


def run_page(scratch: Scratch, page: Path, text: str | None = None) -> Counter[str]:
    """Run every block of ``page`` (or of ``text``, the page as changed to run here) in
    ``scratch``, top to bottom; return how many ran, by language (``sh`` counts lines)."""
    ran: Counter[str] = Counter()
    for block in blocks(page.read_text() if text is None else text):
        where = f"{page.relative_to(REPO)} line {block.line}"
        if block.lang == "sh":
            for command in commands(block):
                if any(command.startswith(skip) for skip in NOT_RUN):
                    continue
                out = scratch.run(SCP + command if command.startswith("scp ") else command)
                ran["sh"] += 1
                if "echo all done" in command:
                    assert "all done" in out, where
        elif block.lang == "python":
            run_python(scratch, block, where)
            ran["python"] += 1
        elif block.lang == "toml":
            read_toml(scratch, block)
            ran["toml"] += 1
        else:
            assert block.lang in SHOWN, (
                f"{where}: a block in {block.lang!r}, which no one runs: fence it as sh, "
                f"python or toml (run), or as text when it cannot run here")
            ran["shown"] += 1
    return ran


def run_python(scratch: Scratch, block: Block, where: str) -> None:
    code = scratch.substitute(block.text)
    module = _module_name(block)
    if module is not None:  # a handler module: written where the workers run, then imported
        (scratch.dir / f"{module}.py").write_text(code)
        code = f"import {module}\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=scratch.dir, env=scratch.env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{where}:\n{done.stdout}\n{done.stderr}"


def read_toml(scratch: Scratch, block: Block) -> None:
    path = _toml_path(block)
    target = Path(scratch.substitute(path)) if path else scratch.dir / f"block{block.line}.toml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(scratch.substitute(block.text))
    load_settings(str(target), env={})  # raises ConfigError saying what is wrong
