"""Fixtures of the documentation tests: a real S3 server when one can run here."""

from tests.s3server import s3_server  # noqa: F401  (a fixture)
