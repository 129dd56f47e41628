"""The order of a parallel run (``make test``: pytest-xdist, ``--dist worksteal``).

worksteal deals the collection out at the start in contiguous runs, one per test process,
and an idle process later takes half of the longest queue left. A long test that comes last
in its queue then runs alone at the end of the run; here each process starts with its share
of the longest tests instead.
"""

from __future__ import annotations

import os

import pytest

LONGEST: dict[str, float] = {
    "tests/integration/test_keys_flow.py::test_window_makes_one_job_per_window": 60,
    "tests/integration/test_pricelist.py::": 35,
    "tests/integration/test_first_hour_again.py::test_ctrl_c_during_the_demo": 31,
    "tests/integration/test_keys_flow.py::test_rate_per_key": 22,
    "tests/docs/test_help_examples.py::test_every_example_of_every_help_runs": 20,
    "tests/systemd/test_install.py::test_the_guide_s_install": 17,
    "tests/integration/test_keys_flow.py::test_debounce": 11,
}
"""Tests of the integration, docs and systemd folders that take 10 s or more (seconds from
``make test``'s durations). The bucket tests are left where they are: they come first
anyway, and their leader leases of a few seconds lapse when the heaviest tests run beside
them (test_exclusive failed so when the longest tests all started at once)."""


@pytest.hookimpl(trylast=True)  # after ``-m`` and ``-k`` deselected what they deselect
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In parallel runs, start each test process with its share of :data:`LONGEST`: a long
    test that comes last in its queue runs alone at the end. (Made for ``--dist
    worksteal``, which ``make test`` uses; harmless to the other modes.)"""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        spread_longest(items, workers)


def spread_longest(items: list[pytest.Item], workers: int) -> None:
    """Move the :data:`LONGEST` tests to the heads of the ``workers`` queues that
    pytest-xdist's worksteal deals out at the start (contiguous runs of the collection:
    ``len // workers``, then of the rest ``len // (workers - 1)``, and so on), longest first
    to the least loaded queue."""
    def length(item: pytest.Item) -> float:
        return next((s for prefix, s in LONGEST.items() if item.nodeid.startswith(prefix)), 0)

    longest = sorted((item for item in items if length(item)), key=length, reverse=True)
    if not longest:
        return
    rest = [item for item in items if not length(item)]
    sizes, left = [], len(items)
    for i in range(workers):
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for item in longest:  # each to the queue whose head is shortest so far
        min(heads, key=lambda head: sum(map(length, head))).append(item)
    ordered: list[pytest.Item] = []
    for head, size in zip(heads, sizes):
        ordered += head + rest[:max(0, size - len(head))]
        del rest[:max(0, size - len(head))]
    items[:] = ordered + rest
