"""The README's code blocks run as written, top to bottom (issue 13, "examples are tests"),
and the README stays short (issue 20: the manual is the guide, docs/guide/).

How blocks run, and what is substituted, is :mod:`tests.docs.blocks`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.docs.blocks import CONTRIBUTING, GUIDE, NOT_RUN, README, run_page, write_inputs
from tests.docs.shell import Scratch

MAX_LINES = 220


def test_the_readme_is_under_220_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines < MAX_LINES, (f"README.md has {lines} lines: the manual goes to a page of "
                               f"docs/guide/, the README links to it")


def test_the_pages_name_only_lines_they_have_as_not_run() -> None:
    pages = [README, CONTRIBUTING, *sorted(GUIDE.glob("*.md"))]
    lines = {line.strip().removeprefix("$ ") for page in pages
             for line in page.read_text().splitlines()}
    for skip in NOT_RUN:
        assert any(line.startswith(skip) for line in lines), \
            f"NOT_RUN names {skip!r}, which no page has any more"


@pytest.mark.slow
def test_the_readmes_code_blocks_run_as_written(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    write_inputs(tmp_path)
    try:
        ran = run_page(scratch, README)
        assert ran["sh"] >= 6 and ran["python"] >= 2, ran
        done = sorted((tmp_path / "data/price/done").glob("*.json"))
        results = [json.loads(path.read_text())["result"] for path in done]
        assert {"priced": 1} in results and {"priced": 2} in results, results
    finally:
        codes = scratch.stop_all()
    daemon = codes[-1]
    assert "serve" in daemon[0] and daemon[1] == 0, codes
