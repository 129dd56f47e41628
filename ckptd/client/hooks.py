"""Hooks: your own code around every job, at the client and at the worker.

A hook is an object with any of these methods (subclass :class:`Hook` and override what you
need; the others do nothing)::

    on_submit(submission)      client: before a job is sent; may add fields (meta) or
                               replace the payload
    before(job)                worker: the handler is about to run
    after(job, result)         worker: the handler returned ``result``
    on_error(job, error)       worker: the handler raised ``error`` (not a Retry)
    on_retry(job, error)       worker: the attempt failed and the job will run again

Hooks are given in Python (``Client(..., hooks=[Tenant()])``, ``Worker(..., hooks=[...])``)
or named in the config (``hooks = ["pkg.mod:Hook"]``: a class, made with no arguments, or an
object). A hook that raises is logged with its traceback and skipped: the job's outcome is
what it would have been without it, and the job is never lost for it.

Where the worker's hooks run: in the process and thread (or event loop task) that runs the
handler, so with ``--pool process`` in the child process (hooks given as Python objects are
then pickled into each child; hooks named in the config are imported there).
"""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ckptd.core.errors import ConfigError

log = logging.getLogger(__name__)


class JobView(Protocol):
    """What a worker's hook sees of a job (:class:`ckptd.Job` or :class:`ckptd.AsyncJob`)."""

    id: str
    queue: str
    attempt: int
    max_attempts: int
    payload: Any
    meta: dict[str, Any]


@dataclass
class Submission:
    """A job about to be submitted, as an ``on_submit`` hook sees it: it may add fields to
    ``meta`` (kept in the job file as ``meta``, given to the worker as ``job.meta``) or
    replace ``payload``."""

    queue: str
    payload: Any
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Hook:
    """Base class of hooks: every method does nothing until overridden."""

    def on_submit(self, submission: Submission) -> None:
        """Client side, before the job is sent (add fields to ``submission.meta``)."""

    def before(self, job: JobView) -> None:
        """Worker side: the handler is about to run on ``job``."""

    def after(self, job: JobView, result: Any) -> None:
        """Worker side: the handler returned ``result``."""

    def on_error(self, job: JobView, error: BaseException) -> None:
        """Worker side: the handler raised ``error`` (every exception but a Retry)."""

    def on_retry(self, job: JobView, error: BaseException) -> None:
        """Worker side: the attempt failed with ``error`` and the job will run again."""


HookSpec = Hook | str
"""A hook, or the name of one (``pkg.mod:Name``)."""


def load_hook(spec: HookSpec) -> Hook:
    """The hook ``spec`` names (``pkg.mod:Name``: a class is made with no arguments), or
    ``spec`` itself. Raises ConfigError saying what is wrong."""
    if not isinstance(spec, str):
        return spec
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"hook {spec!r}: expected MODULE:NAME, e.g. myapp.hooks:Sentry")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"hook {spec!r}: cannot import {module_name}: {exc}") from None
    try:
        found = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"hook {spec!r}: {module_name} has no {attr!r}") from None
    if isinstance(found, type):
        try:
            found = found()
        except Exception as exc:
            raise ConfigError(f"hook {spec!r}: cannot make one: {exc}") from None
    return found  # type: ignore[no-any-return]  # any object with hook methods


def hook_specs(value: Iterable[HookSpec] | None) -> list[HookSpec]:
    """A list of hooks from what a caller gave (None: none)."""
    return list(value or ())


def call_hook(hook: Hook, method: str, *args: object) -> bool:
    """Call ``hook.<method>(*args)`` if it has it; log what it raises. True when it ran
    without raising."""
    fn = getattr(hook, method, None)  # a hook may be any object with some of the methods
    if fn is None:
        return True
    try:
        fn(*args)
    except Exception:
        log.exception("hook %s.%s raised (ignored: the job goes on as without it)",
                      type(hook).__name__, method)
        return False
    return True


class SubmitHooks:
    """The ``on_submit`` hooks of one client, run on each job before it is sent."""

    def __init__(self, hooks: Iterable[HookSpec] | None) -> None:
        self.hooks = [load_hook(h) for h in hook_specs(hooks)]
        self.active = [h for h in self.hooks if overrides(h, "on_submit")]
        self.errors = 0  # hooks that raised

    def __bool__(self) -> bool:
        return bool(self.active)

    def apply(self, queue: str, payload: Any, job_id: str | None) -> Submission:
        """Run the hooks on a job; return what they made of it. A hook that raises is
        logged and its changes undone."""
        sub = Submission(queue, payload, job_id)
        for hook in self.active:
            before_payload, before_meta = sub.payload, copy.deepcopy(sub.meta)
            if not call_hook(hook, "on_submit", sub):
                self.errors += 1
                sub.payload, sub.meta = before_payload, before_meta
        if not isinstance(sub.meta, Mapping):
            log.error("an on_submit hook set meta to %s, not a dict: ignored",
                      type(sub.meta).__name__)
            sub.meta = {}
        return sub


def overrides(hook: object, method: str) -> bool:
    """True when ``hook`` does something in ``method``: the base class's methods do
    nothing, and hooks that do nothing there cost nothing per job."""
    fn = getattr(type(hook), method, None)
    if fn is None:
        return callable(getattr(hook, method, None))
    return fn is not getattr(Hook, method, None)
