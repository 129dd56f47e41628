"""Fixtures of the process-level tests: real daemons and workers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.procs import Processes


@pytest.fixture
def procs(tmp_path: Any) -> Iterator[Processes]:
    """Start daemons and workers; every one is stopped when the test ends."""
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()
