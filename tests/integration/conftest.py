"""Fixtures of the process-level tests: real daemons and workers on 127.0.0.1."""

from tests.pricelist_setup import suppliers  # noqa: F401  (a fixture)
from tests.procs import procs  # noqa: F401  (a fixture)
