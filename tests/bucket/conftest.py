"""Fixtures of the bucket tests: real daemons and workers on a real S3 server (SeaweedFS)."""

from tests.procs import procs  # noqa: F401  (a fixture)
from tests.s3server import s3_server, s3_server_factory  # noqa: F401  (fixtures)
