"""The options every command takes, before or after its name, and help that keeps examples
as they are written.

``ckptd --root ./data status`` and ``ckptd status --root ./data`` mean the same: the group
declares the global options, and every command declares them again, hidden from its help,
unless it has an option of that name itself (``worker --connect``). What a command was given
is handed to the :class:`~ckptd.cli.context.Context` before the command runs, and wins over
what came before the command's name.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ckptd.cli.context import Context
from ckptd.cli.exits import PipeClosed

GLOBAL_NAMES = ("root", "config_file", "fsync", "connect", "log_level", "server_key",
                "client_key")


def connect_option(ctx: click.Context, param: click.Parameter, value: str | None
                   ) -> str | None:
    """``--connect`` as endpoints: ``tcp://`` implied, several joined by commas."""
    if value is None:
        return None
    from ckptd.wire.endpoints import connect_endpoints

    return ",".join(connect_endpoints(value))


def global_options(*, hidden: bool) -> list[click.Option]:
    """New instances of the global options (each command needs its own)."""
    return [
        click.Option(["--root"], metavar="PATH|URL", hidden=hidden,
                     help="The store: a folder, file://, s3://bucket/prefix or memory://. "
                          "[env: CKPTD_ROOT; default: ./ckptd-data]"),
        click.Option(["--config", "config_file"], metavar="FILE", hidden=hidden,
                     type=click.Path(dir_okay=False),
                     help="TOML file of settings. [env: CKPTD_CONFIG]"),
        click.Option(["--fsync"], type=click.Choice(["always", "batch", "never"]),
                     hidden=hidden,
                     help="How writes reach the disk. [env: CKPTD_FSYNC; default: batch]"),
        # The environment is read once, by the group: a command's copy must not read it
        # again, or CKPTD_CONNECT would win over a --connect given before the command.
        click.Option(["--connect"], metavar="ENDPOINT", hidden=hidden, callback=connect_option,
                     envvar=None if hidden else "CKPTD_CONNECT",
                     help="Go through the daemon at this control address instead of the "
                          "store, e.g. 10.0.0.5:5550 (tcp:// is implied). "
                          "[env: CKPTD_CONNECT]"),
        click.Option(["--log-level"], type=click.Choice(["debug", "info", "warning", "error"]),
                     hidden=hidden, help="[env: CKPTD_LOG_LEVEL; default: info]"),
        click.Option(["--server-key"], metavar="FILE", hidden=hidden,
                     help="With --connect and CURVE: the daemon's public key file "
                          "(server.key). [env: CKPTD_SERVER_KEY]"),
        click.Option(["--client-key"], metavar="FILE", hidden=hidden,
                     help="With --connect and CURVE: this machine's secret key file "
                          "(NAME.key_secret). [env: CKPTD_CLIENT_KEY]"),
    ]


def _write_epilog(epilog: str | None, formatter: click.HelpFormatter) -> None:
    """The epilog line by line: examples are shown as written, never re-wrapped."""
    if not epilog:
        return
    formatter.write_paragraph()
    for line in epilog.splitlines():
        formatter.write(f"{'':>{formatter.current_indent}}  {line}".rstrip() + "\n")


class Command(click.Command):
    """A ckptd command: takes the global options too, and shows its examples as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        own = {param.name for param in self.params}
        self.global_names = [option.name for option in global_options(hidden=True)
                             if option.name not in own]
        self.params += [option for option in global_options(hidden=True)
                        if option.name in self.global_names]

    def invoke(self, ctx: click.Context) -> Any:
        given = {name: ctx.params.pop(name, None) for name in self.global_names}
        context = ctx.find_object(Context)
        if context is not None:
            context.override(given)
        try:
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # a closed pipe shows here, while it can be handled
        except BrokenPipeError:
            raise PipeClosed() from None

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        if self.global_names:
            names = ", ".join("--config" if n == "config_file" else "--" + n.replace("_", "-")
                              for n in self.global_names)
            formatter.write_paragraph()
            formatter.write_text(f"Global options, here or before the command: {names} "
                                 "(see ckptd --help).")

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_epilog(self.epilog, formatter)


class Group(click.Group):
    """The ``ckptd`` group: the global options, and commands made as :class:`Command`."""

    command_class = Command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params += global_options(hidden=False)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_epilog(self.epilog, formatter)
