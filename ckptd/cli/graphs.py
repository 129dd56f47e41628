"""``ckptd signal`` and ``ckptd graph``: work that waits, from the command line.

Both work on the store (``--root``: a signal is then a file the daemon's watcher sees) or
through a daemon (``--connect``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypedDict, TypeVar

import click

from ckptd.cli.context import current
from ckptd.cli.inputs import read_payload
from ckptd.cli.options import Command
from ckptd.core.answer_types import GraphNode, WaitsInfo

BRANCH, LAST, PIPE, SPACE = "├─ ", "└─ ", "│  ", "   "
F = TypeVar("F", bound=Callable[..., None])


def parent_options(command: F) -> F:
    """``submit``'s ``--after`` and ``--on-parent-failure``."""
    command = click.option(
        "--on-parent-failure", type=click.Choice(["fail", "run", "ignore"]),
        help="When a parent failed: fail this job too, run it anyway, or run it as if that "
             "parent were not one. [default: fail]")(command)
    return click.option(
        "--after", "after", multiple=True, metavar="QUEUE/ID",
        help="A parent: the job waits in waiting/ until it has ended (repeat for several; "
             "a bare ID is a job of QUEUE).")(command)


class ParentOptions(TypedDict):
    """A submit's parents and its rule when one of them failed."""

    after: list[str] | None
    on_parent_failure: str | None


def parents(after: tuple[str, ...], on_parent_failure: str | None) -> ParentOptions:
    """``submit``'s parents and rule, as its keyword arguments; ``--on-parent-failure``
    needs parents."""
    if on_parent_failure and not after:
        raise click.UsageError("--on-parent-failure needs --after")
    return {"after": list(after) or None, "on_parent_failure": on_parent_failure}


@click.command(cls=Command, epilog="""Examples:
  ckptd signal price 20261127T192416.123456Z-9f3ac1d27b8e4a10 approved
  ckptd signal price order-42 approved '{"by": "ana"}'
  ckptd --connect 127.0.0.1:5550 signal price order-42 approved

The same as a file dropped into the store: ROOT/price/signals/order-42.approved.json
(write it elsewhere, then mv it in; its JSON is the data, an empty file none).""")
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.argument("name")
@click.argument("data_json", required=False, metavar="[JSON]")
@click.option("--data-file", metavar="F|-", help="Read the signal's JSON data from a file.")
def signal(queue: str, job_id: str, name: str, data_json: str | None,
           data_file: str | None) -> None:
    """Send the signal NAME (with optional JSON data) to a job: a job parked for it
    (raise ckptd.Park(signal=NAME)) wakes and reads it in job.signals; a job that parks
    for it later finds it waiting."""
    data = read_payload(data_json, data_file) if data_json or data_file else None
    answer = current().admin().signal(queue, job_id, name, data)
    click.echo(f"signal {name} sent to {queue}/{job_id} ({answer.get('state')})")


@click.command(cls=Command, epilog="""Examples:
  ckptd graph price 20261127T192416.123456Z-9f3ac1d27b8e4a10
  ckptd graph price order-42 --depth 5
  ckptd --connect 127.0.0.1:5550 graph price order-42 --json""")
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.option("--depth", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Levels of parents and children to follow.")
@click.option("--json", "as_json", is_flag=True, help="Print the graph as JSON.")
def graph(queue: str, job_id: str, depth: int, as_json: bool) -> None:
    """Draw a job's parents (what it waits for), children (jobs it spawned), dependents
    (jobs waiting for it) and batch, with their states, as a text tree."""
    tree = current().admin().graph(queue, job_id, depth)
    if as_json:
        click.echo(json.dumps(tree, indent=2, default=str))
        return
    for line in draw(tree):
        click.echo(line)


def _label(node: GraphNode) -> str:
    text = f"{node['job']}  {node.get('state', '?')}"
    if node.get("woken"):
        text += f" (woken: {node['woken']})"
    waits: WaitsInfo = node.get("waits") or {}
    open_refs = waits.get("open") or []
    if open_refs:
        text += f"  waits for {len(open_refs)}: {', '.join(open_refs[:3])}" + (
            " ..." if len(open_refs) > 3 else "")
    wanted = waits.get("signals_wanted") or []
    if wanted:
        text += f"  waits for signal {', '.join(wanted)}"
    if node.get("seen"):
        text += "  (above)"
    return text


def _branches(node: GraphNode) -> list[tuple[str, list[GraphNode]]]:
    found = (("parents", node.get("parents")), ("children", node.get("children")),
             ("waiting for it", node.get("dependents")))
    return [(name, nodes) for name, nodes in found if nodes]


def draw(node: GraphNode, prefix: str = "") -> list[str]:
    """The lines of a graph as a tree (the root's batch last)."""
    lines = [_label(node)] if not prefix else []
    groups = _branches(node)
    batch = node.get("batch") if not prefix else None
    for g, (name, items) in enumerate(groups):
        last_group = g == len(groups) - 1 and not batch
        lines.append(prefix + (LAST if last_group else BRANCH) + name)
        inner = prefix + (SPACE if last_group else PIPE)
        for i, item in enumerate(items):
            last = i == len(items) - 1
            lines.append(inner + (LAST if last else BRANCH) + _label(item))
            lines += draw(item, inner + (SPACE if last else PIPE))
    if batch:
        counts = ", ".join(f"{k} {v}" for k, v in batch["jobs"].items() if v)
        sealed = {True: "sealed", False: "open", None: "fixed size"}[batch["sealed"]]
        callbacks = ", ".join(f"{k} -> {q}" + (" (made)" if k in batch["fired"] else "")
                              for k, q in batch["callbacks"].items())
        lines.append(prefix + LAST + f"batch {batch['batch']} in {batch['queue']}: {sealed}; "
                     f"jobs: {counts or 'none'}; callbacks: {callbacks or 'none'}")
    return lines


COMMANDS = (signal, graph)
