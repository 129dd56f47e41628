"""The Python clients of a running daemon (submit, status, wait, ...): :class:`Client`
(blocking, threads may share it) and :class:`AsyncClient` (for asyncio applications)."""

from ckptd.client.async_client import AsyncClient
from ckptd.client.client import Client, RemoteAdmin

__all__ = ["AsyncClient", "Client", "RemoteAdmin"]
