"""Every code block of every page of the guide (docs/guide/*.md) and of
docs/contributing.md runs as written (issue 20, "docs a newcomer reads").

Each guide page runs in a scratch folder of its own where the README's first job is
already running, as each page says: the README's handler ``tasks.py``, its daemon serving
``./data`` and its worker for ``price`` (:data:`FIRST_JOB`: lines of the README, checked to
be there). A page added to docs/guide/ is run without any change here. The contributing
page runs in the checkout, where its commands are meant to run (tests, ``--help``).
How blocks run, and what is substituted, is :mod:`tests.docs.blocks`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.docs.blocks import (
    CONTRIBUTING,
    GUIDE,
    README,
    REPO,
    blocks,
    commands,
    module_block,
    run_page,
    write_inputs,
)
from tests.docs.shell import Scratch, subcommand

FIRST_JOB = ("ckptd serve --root ./data",
             "ckptd worker --connect 127.0.0.1:5550 --queue price tasks:price",
             """ckptd --root ./data submit price '{"sku": "A-1", "qty": 3}'""")
"""The README's daemon, worker and first job, run before each guide page's blocks (the
pages' commands on the queue price need it to exist: a typo'd queue is made by nothing)."""


def _first_job(scratch: Scratch) -> None:
    (scratch.dir / "tasks.py").write_text(module_block(README, "tasks").text)
    for line in FIRST_JOB:
        scratch.run(line)


def _hand_written_jobs_ran(scratch: Scratch) -> None:
    data = scratch.dir / "data"
    for name in ("order-43", "order-44"):  # the files written by hand became jobs
        job = json.loads((data / "price/done" / f"{name}.json").read_text())
        assert job["id"] == name and job["result"] == {"priced": 1}
    assert json.loads((data / "price/done/order-43.json").read_text())["max_attempts"] == 5


def _waits_went_on(scratch: Scratch) -> None:
    data = scratch.dir / "data"

    def done(queue: str, job_id: str) -> dict[str, object]:
        return dict(json.loads((data / queue / "done" / f"{job_id}.json").read_text()))

    assert done("join", "join-1")["woken"] == {**done("join", "join-1")["woken"],  # type: ignore[dict-item]
                                               "parents": {"split/part-1": "done",
                                                           "split/part-2": "done"}}
    gathered = done("fan", "fan-1")["result"]["gathered"]  # type: ignore[index]
    assert gathered == {f"split/fan-1.part{n}": "done" for n in range(3)}
    for job_id, by in (("report-7", "ana"), ("report-8", "bob"), ("report-9", "carol")):
        assert done("publish", job_id)["result"]["approved"] == {"by": by}  # type: ignore[index]


CHECKS: dict[str, Callable[[Scratch], None]] = {
    "inspect-and-repair.md": _hand_written_jobs_ran,
    "graphs.md": _waits_went_on,
}
"""What a page's blocks must have done, beyond running without an error."""


def test_the_readme_starts_the_first_job_the_pages_build_on() -> None:
    lines = {line for block in blocks(README.read_text()) if block.lang == "sh"
             for line in commands(block)}
    for line in FIRST_JOB:
        assert any(have.split("#")[0].strip() == line for have in lines), \
            f"the README no longer runs {line!r}, which every guide page builds on"


def _pages() -> list[Path]:
    return sorted(GUIDE.glob("*.md"))


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.name)
def test_the_guide_pages_code_blocks_run_as_written(page: Path, tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    write_inputs(tmp_path)
    try:
        _first_job(scratch)
        run_page(scratch, page)
        CHECKS.get(page.name, lambda scratch: None)(scratch)
    finally:
        codes = scratch.stop_all()
    daemon = codes[-1]
    assert "serve" in daemon[0] and daemon[1] == 0, codes


def test_every_page_of_the_guide_is_in_its_index_and_the_readme() -> None:
    index = (GUIDE / "README.md").read_text()
    readme = README.read_text()
    for page in _pages():
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/guide/README.md does not list {page.name}"
            assert f"](docs/guide/{page.name})" in readme, f"README.md does not link {page.name}"


@pytest.mark.slow
def test_the_contributing_pages_code_blocks_run_in_the_checkout() -> None:
    checkout = Scratch(REPO)
    bin_dir = os.path.dirname(sys.executable) + "/"
    text = CONTRIBUTING.read_text().replace(".venv/bin/", bin_dir)
    lines = [line for block in blocks(text) if block.lang == "sh" for line in commands(block)]
    assert not [line for line in lines if subcommand(line) in ("serve", "worker")]
    ran = run_page(checkout, CONTRIBUTING, text)
    assert ran["sh"] >= 4, ran
