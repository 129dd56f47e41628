"""Fixtures of the crash tests: real daemons and workers to kill."""

from tests.procs import procs  # noqa: F401  (a fixture)
