"""Fixtures of the telemetry tests: real daemons and workers on 127.0.0.1."""

from tests.procs import procs  # noqa: F401  (a fixture)
