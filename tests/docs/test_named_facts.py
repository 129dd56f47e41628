"""Facts the documentation states in prose, checked against what is (issue 22, item 18).

The code blocks run in the other docs tests; what the sentences around them say must hold
too: the README's list of dependencies is pyproject.toml's, and the files that submit-file
makes are named in the queue its example submits to, where it really writes them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.docs.blocks import blocks, commands
from tests.procs import base_env

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs" / "guide").glob("*.md"))]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def test_the_readme_names_every_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {_name(r) for r in project["dependencies"]}
    text = README.read_text()
    [listed] = re.findall(r"Dependencies: ([^.]+)\.", text.replace("\n", " "))
    named = {name.strip().lower() for name in listed.split(",")}
    assert named == needed, f"README lists {sorted(named)}, pyproject.toml {sorted(needed)}"


def test_submit_file_s_files_are_named_where_it_writes_them(tmp_path: Path) -> None:
    checked = 0
    for page in PAGES:
        text = page.read_text()
        examples = [line for block in blocks(text) if block.lang == "sh"
                    for line in commands(block) if " submit-file " in line]
        named = re.findall(r"`(\w[\w.-]*)/(blobs|batches)/<batch>\.(source|json)`", text)
        if not named:
            continue
        queues = {line.split(" submit-file ", 1)[1].split()[0] for line in examples}
        assert len(queues) == 1, f"{page.name}: submit-file examples into {queues}"
        [queue] = queues
        for folder_queue, folder, suffix in named:
            assert folder_queue == queue, (
                f"{page.name} says submit-file writes {folder_queue}/{folder}/<batch>.{suffix},"
                f" but its example submits to {queue!r}")
        checked += 1
        # ... and that is where it writes them.
        (tmp_path / "items.csv").write_text("sku,name\nA-1,bolt\nB-2,nut\n")
        done = subprocess.run([sys.executable, "-m", "ckptd", "--root", str(tmp_path / "data"),
                               "submit-file", queue, "items.csv", "--chunk", "1"],
                              cwd=tmp_path, env=base_env(), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        batch = done.stdout.split()[0]
        for _, folder, suffix in named:
            path = tmp_path / "data" / queue / folder / f"{batch}.{suffix}"
            assert path.exists(), f"{page.name}: no {path}"
    assert checked, "no page names the files submit-file makes"
