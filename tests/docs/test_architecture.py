"""docs/architecture.md names every module of ckptd, and only modules that exist; no two
modules of the daemon share a file name."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ckptd"
PAGE = PACKAGE.parent / "docs" / "architecture.md"


def modules() -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if p.name != "__init__.py"}


def named() -> set[str]:
    return set(re.findall(r"`([a-z_0-9]+(?:/[a-z_0-9]+)*\.py)`", PAGE.read_text()))


def test_the_architecture_page_names_every_module() -> None:
    missing = sorted(modules() - named())
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_every_module_the_architecture_page_names_exists() -> None:
    qualified = {name for name in named() if "/" in name}
    gone = sorted(qualified - modules())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


def test_no_two_modules_of_the_daemon_share_a_file_name() -> None:
    names = Counter(p.name for p in (PACKAGE / "daemon").rglob("*.py")
                    if p.name != "__init__.py")
    assert [name for name, n in names.items() if n > 1] == []
