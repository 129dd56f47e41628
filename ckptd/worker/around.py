"""What runs around a handler, in every pool alike: the job's own log, its trace span, the
encryption codec and the worker's hooks.

For each attempt, in the thread, event loop task or child process that runs the handler:

1. the job's log starts (:mod:`ckptd.worker.job_logs`), and its span when tracing is on;
2. the payload and last checkpoint are opened when they are sealed
   (:mod:`ckptd.codec.crypto`), and the job's checkpoints are sealed from then on;
3. the hooks' ``before``, the handler, then ``after`` (with the plaintext result) or
   ``on_error`` / ``on_retry``;
4. the result is sealed, the log sent, the span ended; the pool makes the answer.

A hook that raises is logged (into the job's log too) and changes nothing. A payload that
cannot be opened (no key of its id here, a wrong key) fails the attempt with a
:class:`~ckptd.core.errors.DecryptError` that says which key; the job is kept, sealed as it
was, and retried (with the right key in place, ``ckptd retry`` runs it again).

An :class:`Around` is pickled into the children of the process pool: hooks named in the
config are imported there, hooks given as objects must pickle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ckptd.client.hooks import Hook, HookSpec, call_hook, load_hook, overrides
from ckptd.client.preparing import otel
from ckptd.codec.crypto import Keyring, is_sealed, load_keyring
from ckptd.core.config import Settings
from ckptd.core.errors import DecryptError
from ckptd.core.outcomes import Cancelled, Fail, Retry
from ckptd.wire.messages import JobMessage
from ckptd.worker import job_logs
from ckptd.worker.job import AsyncJob, Job, JobHost, SpawnOptions

if TYPE_CHECKING:
    from ckptd.worker.tracing import AttemptSpan, AttemptTracer

AnyJob = Job | AsyncJob
WORKER_METHODS = ("before", "after", "on_error", "on_retry")


class SealingHost:
    """A job's host that seals its checkpoints and opens the results it reads."""

    def __init__(self, inner: JobHost, keys: Keyring) -> None:
        self.inner = inner
        self.keys = keys

    def checkpoint(self, job: Job, seq: int, state: object, timeout: float) -> None:
        self.inner.checkpoint(job, seq, self.keys.seal(state, "state"), timeout)

    async def checkpoint_async(self, job: AsyncJob, seq: int, state: object,
                               timeout: float) -> None:
        await self.inner.checkpoint_async(job, seq, self.keys.seal(state, "state"), timeout)

    def send(self, kind: bytes, body: dict[str, object]) -> None:
        self.inner.send(kind, body)

    def source_range(self, queue: str, batch: str, start: int, end: int) -> bytes:
        return self.inner.source_range(queue, batch, start, end)

    def write_output(self, queue: str, name: str, data: bytes) -> str:
        return self.inner.write_output(queue, name, data)

    def result_of(self, queue: str, job_id: str) -> Any:
        return self.keys.open(self.inner.result_of(queue, job_id), "result",
                              f"{queue}/{job_id}")

    def spawn(self, parent: str, batch: str | None, queue: str, payload: object, key: str,
              options: SpawnOptions) -> str:
        return self.inner.spawn(parent, batch, queue, self.keys.seal(payload, "payload"), key,
                                options)


class Around:
    """The codec, hooks, log and trace of one worker's attempts (see the module)."""

    def __init__(self, hooks: Sequence[HookSpec] = (), keys: Keyring | None = None,
                 log_limit: int = 1024 * 1024, tracing: str = "off") -> None:
        self.specs = list(hooks)
        self.keys = keys
        self.log_limit = log_limit
        self.tracing = tracing
        self._hooks: dict[str, list[Hook]] | None = None
        self._tracer: AttemptTracer | None = None

    def __getstate__(self) -> dict[str, object]:
        return {"specs": self.specs, "keys": self.keys, "log_limit": self.log_limit,
                "tracing": self.tracing, "_hooks": None, "_tracer": None}

    def load(self) -> None:
        """Import the hooks (at the worker's start, and once in each child): a hook that
        cannot be loaded stops the worker with the reason (ConfigError)."""
        hooks = [load_hook(spec) for spec in self.specs]
        self._hooks = {m: [h for h in hooks if overrides(h, m)] for m in WORKER_METHODS}
        if self.tracing != "off" and self._tracer is None:
            otel(self.tracing)  # a clear error when OpenTelemetry is not installed
            from ckptd.worker.tracing import AttemptTracer

            self._tracer = AttemptTracer(self.tracing)

    def close(self) -> None:
        """The process is about to end: export what the tracer holds."""
        if self._tracer is not None:
            self._tracer.flush()

    def _run_hooks(self, method: str, *args: object) -> None:
        if self._hooks is None:
            self.load()
        assert self._hooks is not None
        hooks = self._hooks[method]
        if hooks:
            for hook in hooks:
                call_hook(hook, method, *args)

    def _begin(self, job: AnyJob, body: JobMessage) -> tuple[Any, Any, Any]:
        """Start the attempt's log and span, set its meta and sealing host; return the log,
        its context token and the span."""
        host = job._worker
        log, token = job_logs.begin(job.queue, job.id, job.attempt,
                                    host.send if host is not None else _nowhere,
                                    self.log_limit)
        if body.meta:
            job.meta = dict(body.meta)
        span = self._tracer.start(job, body) if self._tracer is not None else None
        if self.keys is not None and host is not None:
            job._worker = SealingHost(host, self.keys)
        return log, token, span

    def _open(self, job: AnyJob) -> None:
        where = f"{job.queue}/{job.id}"
        if self.keys is None:
            for kind, value in (("payload", job.payload), ("state", job.state)):
                if is_sealed(value):
                    raise DecryptError(
                        f"cannot decrypt the {kind} of {where}: it was sealed with key "
                        f"{value.get('kid')!r} and this worker has no encryption keys (set "
                        "encryption_key_file or CKPTD_ENCRYPTION_KEYS)")
            return
        job.payload = self.keys.open(job.payload, "payload", where)
        job.state = self.keys.open(job.state, "state", where)

    def _failed(self, job: AnyJob, error: BaseException, span: AttemptSpan | None) -> None:
        if not isinstance(error, Retry):
            self._run_hooks("on_error", job, error)
        again = not isinstance(error, (Fail, Cancelled)) and job.attempt < job.max_attempts
        if again:
            self._run_hooks("on_retry", job, error)
        if span is not None and self._tracer is not None:
            self._tracer.failed(span, error, again)

    def _done(self, job: AnyJob, result: object, span: AttemptSpan | None) -> object:
        self._run_hooks("after", job, result)
        if span is not None and self._tracer is not None:
            self._tracer.done(span)
        return self.keys.seal(result, "result") if self.keys is not None else result

    def call(self, handler: Callable[[Job], Any], job: Job, body: JobMessage) -> Any:
        """Run a plain handler on ``job`` (of the job message ``body``); return the result
        as it is to be stored, or raise what the handler raised."""
        log, token, span = self._begin(job, body)
        try:
            self._open(job)
            self._run_hooks("before", job)
            result = handler(job)
        except BaseException as exc:
            self._failed(job, exc, span)
            raise
        else:
            return self._done(job, result, span)
        finally:
            job_logs.end(log, token)

    async def call_async(self, handler: Callable[[AsyncJob], Awaitable[Any]], job: AsyncJob,
                         body: JobMessage) -> Any:
        """:meth:`call` for an ``async def`` handler."""
        log, token, span = self._begin(job, body)
        try:
            self._open(job)
            self._run_hooks("before", job)
            result = await handler(job)
        except BaseException as exc:
            self._failed(job, exc, span)
            raise
        else:
            return self._done(job, result, span)
        finally:
            job_logs.end(log, token)


def _nowhere(kind: bytes, body: dict[str, object]) -> None:
    """Where the log of a job without a worker goes (a handler called in a test)."""


def around_of(settings: Settings | None, hooks: Sequence[HookSpec] | None,
              keys: Keyring | None) -> Around:
    """The :class:`Around` of a worker: the hooks and keys given, else those its settings
    name (``hooks``, ``encryption_key_file`` / ``encryption_keys``), with its log limit and
    tracing. Raises ConfigError for a hook or key that cannot be loaded."""
    if settings is None:
        settings = Settings()
    if keys is None:
        keys = load_keyring(settings.encryption_key_file, settings.encryption_keys,
                            settings.encryption_clear_fields)
    around = Around(list(settings.hooks) if hooks is None else list(hooks), keys,
                    settings.job_log_limit, settings.tracing)
    around.load()
    return around
