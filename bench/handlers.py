"""Job handlers used by the benchmarks."""

from __future__ import annotations

from typing import Any

from ckptd import Job


def noop(job: Job) -> Any:
    """Do nothing: the benchmark measures ckptd, not the work."""
    return None
