"""What the global options leave for the commands: flags, and settings on demand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

from ckptd.core.answers import Admin
from ckptd.core.config import Settings, load_settings

if TYPE_CHECKING:
    from ckptd.store.admin import StoreAdmin

SETTING_FLAGS = ("root", "fsync", "log_level", "server_key", "client_key")
"""Global options that are settings (the others are ``config_file`` and ``connect``)."""


class Context:
    """The global options of one ``ckptd`` run, wherever they were given on the line."""

    def __init__(self, flags: dict[str, str | None], config_file: str | None,
                 connect: str | None) -> None:
        self.flags = flags
        self.config_file = config_file
        self.connect = connect
        self._settings: Settings | None = None
        self._admin: Admin | None = None
        self._store_admin: StoreAdmin | None = None

    def override(self, given: Mapping[str, object]) -> None:
        """Take the global options given after the command's name (they win)."""
        for name, value in given.items():
            if value is None:
                continue
            if name == "config_file":
                self.config_file = str(value)
            elif name == "connect":
                self.connect = str(value)
            else:
                self.flags[name] = str(value)
            self._settings = None
            self._admin = self._store_admin = None

    def settings(self, **more: object) -> Settings:
        """Load the settings once, with the command's own flags on top."""
        if self._settings is None or more:
            flags: dict[str, object] = dict(self.flags)
            flags.update({k: v for k, v in more.items() if v is not None})
            self._settings = load_settings(self.config_file, flags=flags)
        return self._settings

    def admin(self) -> Admin:
        """Return what carries out store commands: the daemon's client or the store itself
        (made once per run)."""
        if self._admin is None:
            settings = self.settings()
            if self.connect:
                from ckptd.cli.sealing import client_options
                from ckptd.client.client import Client
                from ckptd.client.remote_admin import RemoteAdmin
                from ckptd.wire.security import client_curve

                self._admin = RemoteAdmin(Client(self.connect, curve=client_curve(settings),
                                                 **client_options(settings)))
            else:
                self._admin = self.store_admin()
        return self._admin

    def store_admin(self) -> StoreAdmin:
        """Return the store commands carried out on the store itself (never the daemon)."""
        from ckptd.store import store_from_settings
        from ckptd.store.admin import StoreAdmin

        if self._store_admin is None:
            settings = self.settings()
            self._store_admin = StoreAdmin(store_from_settings(settings), settings)
        return self._store_admin


def current() -> Context:
    """The Context of the command being run."""
    context = click.get_current_context().find_object(Context)
    assert context is not None, "commands run inside the ckptd group"
    return context
