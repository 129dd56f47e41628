"""The Python clients of a running daemon (submit, status, wait, ...): :class:`Client`
(blocking, threads may share it) and :class:`AsyncClient` (for asyncio applications)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckptd.client.client import Client
from ckptd.client.remote_admin import RemoteAdmin

if TYPE_CHECKING:
    from ckptd.client.async_client import AsyncClient

__all__ = ["AsyncClient", "Client", "RemoteAdmin"]


def __getattr__(name: str) -> object:
    """``AsyncClient`` on first use: it imports asyncio (~15 ms), which the CLI, the daemon
    and workers never need."""
    if name == "AsyncClient":
        from ckptd.client.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
