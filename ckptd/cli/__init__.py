"""The ``ckptd`` command: a thin click layer over the Python API."""

from ckptd.cli.main import cli, main

__all__ = ["cli", "main"]
