"""A job's own log, per attempt: what its handler writes with ``job.log(...)`` and the
``logging`` records emitted while it runs, sent to the daemon in pieces.

Records are attributed to a job through a context variable set around its handler (in the
handler's thread, in its event loop task, or in the child process that runs it), never by
swapping handlers: one :class:`JobLogHandler` on the root logger per process looks at the
variable and keeps the record when it is set. Records of threads the handler starts itself
are not attributed (they do not inherit the variable; ``asyncio.to_thread`` does).

The lines of an attempt go to the daemon as ``log`` messages, each carrying the offset of
its first byte in the attempt's log: a piece at most every :data:`FLUSH_EVERY` seconds (a
thread per process sends what waits), and the rest when the handler ends, before its answer.
The daemon writes them into the store (``<queue>/logs/<id>/<attempt>.log``). An attempt keeps
at most ``limit`` bytes; the lines beyond are counted and named in a last line.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar, Token

from ckptd.worker.unconfirmed import attempt_key

FLUSH_EVERY = 0.2  # seconds: how old the oldest unsent line of a running job may get
PIECE_BYTES = 64 * 1024  # a piece is sent at once when it grows this big
TAIL_LINES = 20  # lines of an attempt kept for its failed answer (last_error.log_tail)
LINE_LIMIT = 16 * 1024  # one line is cut to this many characters

Send = Callable[[bytes, dict[str, object]], None]

_current: ContextVar[AttemptLog | None] = ContextVar("ckptd_job_log", default=None)


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + \
        f".{int(when % 1 * 1000):03d}Z"


class AttemptLog:
    """The log of one attempt in this process: lines waiting to be sent, and the count of
    bytes sent before them (the offset of the next piece)."""

    def __init__(self, queue: str, job_id: str, attempt: int, send: Send, limit: int) -> None:
        self.queue = queue
        self.job_id = job_id
        self.attempt = attempt
        self.limit = limit
        self._send = send
        self._lock = threading.Lock()
        self._waiting: list[str] = []
        self._waiting_bytes = 0
        self._since = 0.0  # when the oldest waiting line was added
        self.offset = 0  # bytes sent so far
        self.kept = 0  # bytes kept (sent or waiting)
        self.dropped = 0  # lines beyond the limit

    def add(self, text: str, level: str = "INFO", name: str = "job",
            when: float | None = None) -> None:
        """Keep one record (a line; more for a text with newlines)."""
        now = time.time() if when is None else when
        line = f"{_stamp(now)} {level} {name}: {text[:LINE_LIMIT]}".rstrip("\n") + "\n"
        size = len(line.encode())
        send_now = False
        with self._lock:
            if self.kept + size > self.limit:
                self.dropped += 1
                return
            if not self._waiting:
                self._since = time.monotonic()
                if not self.kept:
                    _open.add(self)  # the sending thread looks at it from now on
            self._waiting.append(line)
            self._waiting_bytes += size
            self.kept += size
            send_now = self._waiting_bytes >= PIECE_BYTES
        if send_now:
            self.flush()

    def due(self, now: float) -> bool:
        """True when lines have waited :data:`FLUSH_EVERY` or longer."""
        return bool(self._waiting) and now - self._since >= FLUSH_EVERY

    def flush(self) -> None:
        """Send the waiting lines as one piece (nothing when none wait)."""
        with self._lock:
            if not self._waiting:
                return
            text = "".join(self._waiting)
            offset = self.offset
            self.offset += self._waiting_bytes
            self._waiting, self._waiting_bytes = [], 0
            try:
                self._send(b"log", {"queue": self.queue, "id": self.job_id,
                                    "attempt": self.attempt, "offset": offset, "text": text})
            except Exception:  # the worker is going away: the lines are lost, not the job
                pass

    def close(self) -> None:
        """The attempt's handler has ended: say what was dropped, send the rest."""
        if self.dropped:
            with self._lock:
                note = (f"{_stamp(time.time())} WARNING ckptd: the log limit of {self.limit} "
                        f"bytes was reached: {self.dropped} more line(s) dropped\n")
                self._waiting.append(note)
                self._waiting_bytes += len(note.encode())
        self.flush()


class JobLogHandler(logging.Handler):
    """On the root logger: keeps each record emitted while a job's handler runs in that
    job's log (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is None:
            return
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted must not break the job
            text = str(record.msg)
        log.add(text, record.levelname, record.name, record.created)


_open: weakref.WeakSet[AttemptLog] = weakref.WeakSet()
_setup_lock = threading.Lock()
_installed = False


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSH_EVERY / 2)
        now = time.monotonic()
        for log in list(_open):
            if log.due(now):
                log.flush()


def _install() -> None:
    """Put the handler on the root logger and start the sending thread (once a process)."""
    global _installed
    with _setup_lock:
        if _installed:
            return
        logging.getLogger().addHandler(JobLogHandler())
        threading.Thread(target=_flush_loop, name="ckptd-job-logs", daemon=True).start()
        _installed = True


def begin(queue: str, job_id: str, attempt: int, send: Send, limit: int
          ) -> tuple[AttemptLog, Token[AttemptLog | None]]:
    """Start keeping an attempt's log in the current context (thread, task)."""
    if not _installed:
        _install()
    log = AttemptLog(queue, job_id, attempt, send, limit)
    return log, _current.set(log)


def end(log: AttemptLog, token: Token[AttemptLog | None]) -> None:
    """Stop keeping it: send what waits."""
    _current.reset(token)
    if log.kept or log.dropped:  # (a job that logged nothing costs nothing more)
        _open.discard(log)
        log.close()


def write(text: str, level: str = "INFO") -> bool:
    """Add a line to the log of the job running in this context (``job.log``); False when
    none runs here."""
    log = _current.get()
    if log is None:
        return False
    log.add(text, level)
    return True


class LogTails:
    """The last lines of each attempt's log as they pass through the worker, for the
    answer of an attempt that fails (``last_error.log_tail``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tails: dict[tuple[str, str, int], deque[str]] = {}

    def keep(self, body: dict[str, object]) -> None:
        """A ``log`` message on its way to the daemon."""
        key = attempt_key(body)
        lines = str(body.get("text", "")).splitlines()
        with self._lock:
            tail = self._tails.get(key)
            if tail is None:
                tail = self._tails[key] = deque(maxlen=TAIL_LINES)
            tail.extend(line[:500] for line in lines)

    def attach(self, kind: bytes, body: dict[str, object]) -> None:
        """An attempt's answer: forget its tail, and put it into a failed one."""
        with self._lock:
            tail = self._tails.pop(attempt_key(body), None)
        if tail and kind == b"failed" and not body.get("given_back"):
            body["log_tail"] = list(tail)
