"""The commands that go with the operator console: its users, and the actions it shares
with the CLI that have no older command (replay, move). A schedule's "run now" is
``Client.run_schedule`` and the console's button."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from ckptd.cli.context import current
from ckptd.cli.options import Command
from ckptd.core.errors import ConfigError
from ckptd.core.job_filter import make_filter
from ckptd.core.states import State


@click.command("console-user", cls=Command, epilog="""Examples:
  ckptd console-user /etc/ckptd/console-users ci-bot --token            # prints a token
  ckptd console-user /etc/ckptd/console-users grafana --role read-only --token
  ckptd console-user /etc/ckptd/console-users ci-bot --remove

Without --token it asks for a password (or reads it with --password-stdin). Then
console_users = "/etc/ckptd/console-users" and console_actions = true in the config;
a running daemon reads the file again when it changes. A script sends a token as
'Authorization: Bearer NAME:TOKEN'.""")
@click.argument("file", metavar="FILE")
@click.argument("name", metavar="NAME")
@click.option("--role", type=click.Choice(["operator", "read-only"]), default="operator",
              show_default=True, help="An operator may act; a read-only user may only look.")
@click.option("--token", is_flag=True, help="Make a random token instead of a password, "
              "and print it (once).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--remove", is_flag=True, help="Remove NAME from FILE.")
def console_user(file: str, name: str, role: str, token: bool, password_stdin: bool,
                 remove: bool) -> None:
    """Add, change or remove a user of the console in the users file FILE (made mode 0600):
    a name, a role and a password (or a token), kept as an scrypt hash."""
    from ckptd.daemon.telemetry.console_auth import set_user

    secret: str | None
    if remove:
        secret = None
    elif token:
        secret = os.urandom(24).hex()
    elif password_stdin:
        secret = sys.stdin.readline().rstrip("\n")
    else:
        secret = click.prompt("password", hide_input=True, confirmation_prompt=True,
                              err=True)
    if secret is not None and len(secret) < 8:
        raise ConfigError("a password needs at least 8 characters")
    set_user(file, name, role, secret)
    if remove:
        click.echo(f"removed {name} from {file}")
    elif token:
        click.echo(f"{name}:{secret}")
        click.echo(f"(a {role} token: send it as 'Authorization: Bearer {name}:...'; it is "
                   "not shown again)", err=True)
    else:
        click.echo(f"{name} ({role}) written to {file}")


@click.command(cls=Command, epilog="""Examples:
  ckptd replay price --from failed --dry-run
  ckptd replay price --from failed --error TimeoutError --since 2h
  ckptd replay price --from done --where sku=A-1 --to-root ./sandbox
  ckptd replay price --from failed --keep-checkpoint --limit 100

Each copy is a new pending job with replay_of naming the job it copies; the source is only
read. A daemon running on the target root picks the copies up.""")
@click.argument("queue")
@click.option("--from", "state", type=click.Choice(["done", "failed"]), required=True,
              help="Copy done or failed jobs.")
@click.option("--since", metavar="AGE|TIME", help="Only jobs finished since then (2h, or "
              "2026-11-27T18:00:00Z).")
@click.option("--until", metavar="AGE|TIME", help="Only jobs finished until then.")
@click.option("--where", multiple=True, metavar="FIELD=VALUE",
              help="Only jobs whose payload has this value (repeat: all must hold).")
@click.option("--error", metavar="TYPE|TEXT", help="Only jobs whose last error has this type "
              "(or this text in its message).")
@click.option("--to-root", metavar="ROOT", help="Copy into this store (a sandbox) instead "
              "of the same one.")
@click.option("--keep-checkpoint", is_flag=True, help="Copy each job's last checkpoint too: "
              "the copy resumes where the job stopped.")
@click.option("--dry-run", is_flag=True, help="Count and list what would be copied.")
@click.option("--limit", type=click.IntRange(min=1), help="Copy at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def replay(queue: str, state: str, since: str | None, until: str | None,
           where: tuple[str, ...], error: str | None, to_root: str | None,
           keep_checkpoint: bool, dry_run: bool, limit: int | None, as_json: bool) -> None:
    """Copy finished jobs of QUEUE as new pending jobs (same payload, lineage in
    replay_of), into the same store or another root (--to-root)."""
    import dataclasses

    from ckptd.store import store_from_settings
    from ckptd.store.replay import replay as run_replay

    ctx = current()
    if ctx.connect:
        raise ConfigError("replay works on the store itself: use --root (the console runs "
                          "it on the daemon's store)")
    settings = ctx.settings()
    now = time.time()
    flt = make_filter(where, error, since, until, now=now)
    source = store_from_settings(settings)
    target = source if not to_root else store_from_settings(
        dataclasses.replace(settings, root=to_root))
    try:
        answer = run_replay(source, target, settings, queue, State(state), flt, now=now,
                            keep_checkpoint=keep_checkpoint, dry_run=dry_run, limit=limit)
    finally:
        source.close()
        if target is not source:
            target.close()
    if as_json:
        click.echo(json.dumps(answer.as_dict(), indent=2))
        return
    verb = "would copy" if dry_run else "copied"
    click.echo(f"{verb} {answer.matched if dry_run else answer.created} {state} job(s) of "
               f"{queue} ({flt.describe()}) into {answer.target}"
               + (f", {answer.checkpoints} with their checkpoint" if answer.checkpoints else ""))
    for old, new in answer.sample:
        click.echo(f"  {old}" + (f" -> {new}" if new else ""))


@click.command(cls=Command, epilog="""Example:
  ckptd move price 20261127T192416.123456Z-9f3ac1d27b8e4a10 --to price-slow

Through a daemon (--connect) it is the daemon's own move: a job of a queue it leads.""")
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.option("--to", "to", required=True, metavar="QUEUE", help="The queue to move it to.")
def move(queue: str, job_id: str, to: str) -> None:
    """Move a pending or failed job to another queue, with the same id (a failed one gets
    fresh attempts, as a retry would)."""
    was = current().admin().move(queue, job_id, to)
    click.echo(f"moved {job_id} ({was}) to {to}/pending")


COMMANDS = (console_user, replay, move)
