"""Typos create nothing: what a write command may make, and what it must be told to.

A submit (or a pause) to a store or a queue that is not there would make it. Where that is
surely meant, it is made and said on stderr (``note: ...``); where the name is close to one
that exists (``./dta`` beside ``./data``, ``prise`` beside ``price``), it is refused with
"did you mean", and made only with ``--create`` (a queue also when it is named in the config,
``[queues.NAME]``). Reads say "did you mean" already (:meth:`QueueNotFound.among`); this
makes the writes as careful.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

import click

from ckptd.cli.context import Context
from ckptd.core.errors import FileMissing, QueueNotFound
from ckptd.core.names import check_queue
from ckptd.store import is_local

CUTOFF = 0.8  # how alike two names must be to be taken for a typo of each other


def closest(name: str, known: list[str]) -> str | None:
    """The name of ``known`` that ``name`` is probably a typo of, if any."""
    found = difflib.get_close_matches(name, [k for k in known if k != name], n=1, cutoff=CUTOFF)
    return found[0] if found else None


def _is_store(path: str) -> bool:
    """Whether ``path`` is a folder a daemon or a submit made a store of."""
    if os.path.isdir(os.path.join(path, ".ckptd")):
        return True
    try:
        with os.scandir(path) as entries:
            return any(e.is_dir(follow_symlinks=False)
                       and os.path.isdir(os.path.join(e.path, "pending")) for e in entries)
    except OSError:
        return False


def near_store(root: str) -> str | None:
    """A store beside the local folder ``root`` whose name is close to it: what a mistyped
    ``--root`` was probably meant to be (as the user wrote it, ``./data``)."""
    if not is_local(root):
        return None
    path = os.path.abspath(os.path.expanduser(root.removeprefix("file://")))
    parent, name = os.path.split(path.rstrip(os.sep))
    try:
        with os.scandir(parent) as entries:
            siblings = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    for candidate in difflib.get_close_matches(name, [s for s in siblings if s != name], n=3,
                                               cutoff=CUTOFF):
        if _is_store(os.path.join(parent, candidate)):
            shown_parent = os.path.dirname(root.rstrip("/"))
            return os.path.join(shown_parent, candidate) if shown_parent else candidate
    return None


@dataclass
class Creation:
    """What a write command is about to make, checked before it writes anything."""

    notes: list[str] = field(default_factory=list)

    def say(self) -> None:
        """Print the notes (after the command did what it was asked)."""
        for note in self.notes:
            click.echo(f"note: {note}", err=True)


def check_new(ctx: Context, queues: list[str], *, create: bool) -> Creation:
    """Check that writing into ``queues`` (the first one receives jobs; the others are named
    for later, like ``--then``) makes no store and no queue by mistake.

    Raises FileMissing for a new store beside one of a close name, QueueNotFound for a new
    queue of a name close to an existing one, unless ``create``; returns the notes that say
    what will be new otherwise.
    """
    for queue in queues:
        check_queue(queue)
    creation = Creation()
    settings = ctx.settings()
    configured = list(settings.queues)
    if ctx.connect:
        from ckptd.client.client import Client
        from ckptd.client.remote_admin import RemoteAdmin

        admin = ctx.admin()
        assert isinstance(admin, RemoteAdmin)
        client: Client = admin.client
        answer = client.status()
        existing = list(answer.get("queues") or {})
        where = f"the daemon at {client.endpoint}"
    else:
        store = ctx.store_admin().store
        existing = store.queues()
        where = store.url
        if not existing and not store.root_exists():
            near = near_store(settings.root)
            if near is not None and not create:
                raise FileMissing(f"no store at {settings.root}; did you mean {near}? (give "
                                  f"--create to make a new store at {settings.root})")
            creation.notes.append(f"made a new store at {where}")
    known = existing + [q for q in configured if q not in existing]
    for number, queue in enumerate(queues):
        if queue in known:
            continue
        near_queue = closest(queue, known)
        if near_queue is not None and not create:
            raise QueueNotFound(
                f"no queue {queue!r} in {where}; did you mean {near_queue!r}? (to make a new "
                f"queue {queue!r}, give --create, or name it in the config: [queues.{queue}])")
        if number == 0:
            others = f" (its other queues: {', '.join(known[:10])})" if known else ""
            creation.notes.append(f"queue {queue!r} is new in {where}{others}")
    return creation


def check_existing(ctx: Context, queue: str, *, create: bool | None = False) -> Creation:
    """Raise QueueNotFound (with "did you mean") unless ``queue`` exists (through a daemon:
    also when a worker serves it), is named in the config, or ``create`` says to make it:
    an operator control (pause, resume, limit) makes no queue by itself. ``create`` is None
    for a command that cannot make one (resume): the error then offers no --create."""
    check_queue(queue)
    creation = Creation()
    if queue in ctx.settings().queues:
        return creation
    if ctx.connect:
        from ckptd.client.remote_admin import RemoteAdmin

        admin = ctx.admin()
        assert isinstance(admin, RemoteAdmin)
        existing = list(admin.client.status().get("queues") or {})
        where = f"the daemon at {admin.client.endpoint}"
    else:
        store = ctx.store_admin().store
        existing, where = store.queues(), store.url
    if queue in existing:
        return creation
    if not create:
        error = QueueNotFound.among(queue, where, existing)
        if create is None:
            raise error
        raise QueueNotFound(f"{error} (give --create to make it, or name it in the config: "
                            f"[queues.{queue}])")
    creation.notes.append(f"queue {queue!r} is new in {where}")
    return creation
