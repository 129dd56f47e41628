"""The Python client of a running daemon (submit, status, wait, ...)."""

from ckptd.client.client import Client
from ckptd.client.remote_admin import RemoteAdmin

__all__ = ["Client", "RemoteAdmin"]
