"""Fixtures of the crash tests: real daemons and workers to kill."""

from tests.pricelist_setup import suppliers  # noqa: F401  (a fixture)
from tests.procs import procs  # noqa: F401  (a fixture)
