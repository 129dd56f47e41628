"""The Python client of a running daemon (submit, status, wait, ...)."""

from ckptd.client.client import Client, RemoteAdmin

__all__ = ["Client", "RemoteAdmin"]
