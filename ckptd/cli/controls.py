"""The operator controls' commands: pause, resume, limit, schedules.

Each works on the store itself (``--root``: it writes the queue's control files, which a
running daemon sees at once on a local disk, within ``poll_interval`` on a bucket) or
through a daemon (``--connect``: the daemon writes them and applies them at once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

import click

from ckptd.cli.context import current
from ckptd.cli.creation import check_existing
from ckptd.cli.options import Command
from ckptd.core.answer_types import LimitsView, ScheduleRow
from ckptd.core.answers import LimitChanges
from ckptd.core.errors import ConfigError
from ckptd.core.queue_controls import parse_rate
from ckptd.core.timefmt import format_duration

T = TypeVar("T")


def _limits_line(limits: LimitsView) -> str:
    running = limits.get("max_running")
    rate = limits.get("rate")
    where = limits.get("source") or "config"
    weight = f", weight {limits['weight']}" if "weight" in limits else ""
    return (f"max_running {running if running is not None else 'none'}, "
            f"rate {rate or 'none'}{weight} (from {where})")


@click.command(cls=Command, epilog="""Examples:
  ckptd pause price --reason "supplier API down until 14:00"
  ckptd --connect 127.0.0.1:5550 pause price

By hand, the same: echo "supplier API down" > ./data/price/paused (rm it to resume).""")
@click.argument("queue")
@click.option("--reason", default="", metavar="TEXT",
              help="Why: the file's text, shown by status and explain.")
@click.option("--create", is_flag=True,
              help="Make QUEUE if it does not exist yet (a typo is refused otherwise).")
def pause(queue: str, reason: str, create: bool) -> None:
    """Pause QUEUE: no job of it is claimed until 'ckptd resume'; running jobs finish and
    submits are still accepted. QUEUE must exist (or be named in the config, or --create).

    Writes the file <root>/QUEUE/paused, which is the whole state: a paused queue stays
    paused across daemon restarts and failovers. A daemon stops claiming within 100 ms
    (at its next listing, poll_interval, on a bucket when not asked through --connect).
    """
    ctx = current()
    creation = check_existing(ctx, queue, create=create)
    answer = ctx.admin().pause(queue, reason)
    why = f": {reason}" if reason else ""
    click.echo(f"{answer['queue']} paused{why}")
    creation.say()


@click.command(cls=Command, epilog="""Examples:
  ckptd resume price
  ckptd --connect 127.0.0.1:5550 resume price""")
@click.argument("queue")
def resume(queue: str) -> None:
    """Resume QUEUE: remove <root>/QUEUE/paused; claims start again at once."""
    ctx = current()
    check_existing(ctx, queue, create=None)
    answer = ctx.admin().resume(queue)
    click.echo(f"{answer['queue']} resumed" if answer.get("was_paused")
               else f"{answer['queue']} was not paused")


def _limit_value(value: str, parse: Callable[[str, str], T], what: str) -> T | None:
    """``value`` parsed; None for ``none`` (or ``off``): the limit is removed."""
    if value.strip().lower() in ("none", "off"):
        return None
    return parse(value, what)


def _running(value: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"invalid {what} {value!r}: expected a whole number, or none"
                          ) from None
    if number < 1:
        raise ConfigError(f"invalid {what} {value!r}: expected at least 1, or none")
    return number


@click.command(cls=Command, epilog="""Examples:
  ckptd limit price --max-running 5 --rate 100/s
  ckptd limit price --rate 5000/h
  ckptd limit price --max-running none
  ckptd limit price
  ckptd limit price --reset
  ckptd limit price --key supplier-a --max-running 2 --rate 50/s
  ckptd limit price --key '*' --max-running 3
  ckptd limit price --key supplier-a --reset

Rates read 100/s, 10/m, 5000/h, 3/2s. 'none' removes a limit set here (the config's
applies again); --reset removes the file, leaving the config's [queues.QUEUE] limits.
With --key the limits are those of the key's jobs ('*': of every key), in
<root>/QUEUE/key_limits.json (docs/guide/flow-control.md).""")
@click.argument("queue")
@click.option("--max-running", metavar="N|none",
              help="At most N jobs of QUEUE (of KEY) claimed at once, over every worker.")
@click.option("--rate", metavar="RATE|none", help="Dispatch rate of QUEUE (of KEY).")
@click.option("--key", metavar="KEY|*", help="Limits of one key of QUEUE ('*': every key).")
@click.option("--weight", metavar="N|none", help="With --key: the key's turns per round of "
              "the fair share (fair = true). [default: 1]")
@click.option("--reset", is_flag=True, help="Remove QUEUE's limits.json (with --key: the "
              "key's entry of key_limits.json).")
@click.option("--create", is_flag=True,
              help="Make QUEUE if it does not exist yet (a typo is refused otherwise).")
def limit(queue: str, max_running: str | None, rate: str | None, key: str | None,
          weight: str | None, reset: bool, create: bool) -> None:
    """Change (or show) QUEUE's limits at run time, in the file <root>/QUEUE/limits.json.

    The file wins over max_running and rate in [queues.QUEUE] of the config while it
    exists, so a limit set here holds across restarts. With no option: show the limits.
    """
    if reset and (max_running is not None or rate is not None or weight is not None):
        raise click.UsageError("give --reset alone, or --max-running / --rate / --weight")
    if weight is not None and key is None:
        raise click.UsageError("--weight is a limit of keys: give --key too")
    changes: LimitChanges = {}
    if weight is not None:
        changes["weight"] = _limit_value(weight, _running, "--weight")
    if max_running is not None:
        changes["max_running"] = _limit_value(max_running, _running, "--max-running")
    if rate is not None:
        found = _limit_value(rate, parse_rate, "--rate")
        changes["rate"] = found.text if found is not None else None
    ctx = current()
    creation = check_existing(ctx, queue, create=create)
    answer = ctx.admin().limit(queue, changes, reset, key)
    which = f" key {answer['key']}" if answer.get("key") else ""
    click.echo(f"{answer['queue']}{which}: {_limits_line(answer['limits'])}")
    creation.say()


@click.command(cls=Command, epilog="""Examples:
  ckptd schedules
  ckptd --connect 127.0.0.1:5550 schedules --json

Schedules are [schedules.NAME] tables of the config (docs/guide/operator-controls.md).""")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def schedules(as_json: bool) -> None:
    """List the schedules with their next and last runs.

    Through a daemon (--connect) the plans of the daemon that runs them (with the ticks
    it submitted); on a store, the config's schedules and the last tick each one recorded.
    """
    ctx = current()
    if ctx.connect:
        from ckptd.client.client import Client
        from ckptd.wire.security import client_curve

        with Client(ctx.connect, curve=client_curve(ctx.settings())) as client:
            rows = client.schedules()
    else:
        from ckptd.daemon.controls.schedules import store_view

        settings = ctx.settings()
        admin = ctx.store_admin()
        try:
            rows = store_view(settings.schedules, admin.store, time.time())
        finally:
            admin.store.close()
    if as_json:
        click.echo(json.dumps({"schedules": rows}, indent=2))
        return
    if not rows:
        click.echo("no schedules ([schedules.NAME] tables in the config; see --help)")
        return
    click.echo(schedule_table(rows))


def schedule_table(rows: list[ScheduleRow]) -> str:
    """The schedules as a table: name, queue, when, next (in), last, catch_up."""
    table = [["schedule", "queue", "when", "next", "in", "last", "catch_up"]]
    for row in rows:
        table.append([row["name"], row["queue"], row["when"], row["next"] or "-",
                      format_duration(float(row.get("next_in_s") or 0.0)),
                      row.get("last") or "never", row["catch_up"]])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip()
                     for r in table)


COMMANDS = (pause, resume, limit, schedules)
