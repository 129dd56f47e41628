"""The event loop that S3 requests run on, and its orderly close before Python finalizes.

obstore sends each request from its own Rust threads (a tokio runtime) and hands the
answer back by calling the event loop's ``call_soon_threadsafe`` from one of them. That
call wakes the loop by writing to its self-pipe, and the write releases the GIL; the Rust
thread then needs the GIL back to return. A short process (``ckptd --root s3://... status``)
can get its last answer, print it and reach the interpreter's finalization in between:
CPython 3.11 to 3.13 then ends a thread that asks for the GIL with ``pthread_exit``, which
cannot unwind through Rust frames, and the process aborts (SIGABRT, or SIGSEGV/SIGBUS while
faulthandler reports it) after its work was done. Requests abandoned at their deadline do
the same when their answer comes late.

:class:`IoLoop` is the loop of one process's S3 requests. It counts the requests in flight
and the foreign threads inside its ``call_soon_threadsafe``; :meth:`IoLoop.close` waits
until both are zero (requests get at most ``CLOSE_WAIT``), handing the GIL over meanwhile,
and only then stops the loop. It runs when the store is closed and, for whoever forgets,
at exit (``atexit`` runs before finalization, while other threads may still take the
GIL). The stores of a process share their loops (:func:`acquire_loop`: the requests', and
the leases' own), each closed with its last user.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextvars import Context
from typing import TypeVar, TypeVarTuple

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

CLOSE_WAIT = 10.0  # seconds close() waits for requests still in flight
SETTLE = 0.002  # seconds the GIL is handed over between two looks at close


class _CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that knows how many foreign threads are inside its
    ``call_soon_threadsafe`` (a deque's append and pop are atomic under the GIL)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside: deque[None] = deque()

    def call_soon_threadsafe(self, callback: Callable[[*Ts], object],
                             *args: *Ts, context: Context | None = None
                             ) -> asyncio.Handle:
        self.inside.append(None)
        try:
            if self.is_closed():  # an answer later than close's wait: nobody awaits it
                dropped = asyncio.Handle(callback, args, self, context)
                dropped.cancel()
                return dropped
            return super().call_soon_threadsafe(callback, *args, context=context)
        finally:
            self.inside.pop()


class IoLoop:
    """An event loop in a thread of its own, for requests from any thread."""

    def __init__(self, name: str = "ckptd-s3") -> None:
        self.loop = _CountingLoop()
        self._flight: deque[None] = deque()  # one entry per request in flight
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, coro_func: Callable[..., Awaitable[T]], *args: object) -> Future[T]:
        """Start ``coro_func(*args)`` on the loop; its future is done when it ended.

        Raises RuntimeError once the loop is closed.
        """
        if self._closed:
            raise RuntimeError("the S3 event loop is closed (the store was closed)")
        self._flight.append(None)

        async def tracked() -> T:
            try:
                return await coro_func(*args)
            finally:
                self._flight.pop()

        try:
            return asyncio.run_coroutine_threadsafe(tracked(), self.loop)
        except BaseException:
            self._flight.pop()
            raise

    def run(self, coro_func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run ``coro_func(*args)`` on the loop and wait for its result (not from the loop's
        own thread)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("IoLoop.run called from the loop's own thread")
        return self.submit(coro_func, *args).result()

    def quiet(self) -> bool:
        """True when no request is in flight and no foreign thread is handing one back."""
        return not self._flight and not self.loop.inside

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Wait (up to ``wait``) for the requests in flight and for every thread handing an
        answer back, then stop the loop and its thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + wait
        while self._flight and time.monotonic() < deadline:
            time.sleep(SETTLE)  # sleeping hands the GIL to the threads that wait for it
        if self._flight:
            log.warning("%d S3 request(s) still in flight after %gs at close",
                        len(self._flight), wait)
        # An answer that was handed back may still have its thread inside the loop's
        # call_soon_threadsafe: let it out (it needs the GIL for microseconds).
        while self.loop.inside and time.monotonic() < deadline + 1.0:
            time.sleep(SETTLE)
        time.sleep(SETTLE)  # the last one out may still be on its way back to Rust
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.loop.close()


_shared: dict[str, IoLoop] = {}
_users: dict[str, int] = {}
_shared_lock = threading.Lock()


def acquire_loop(name: str = "ckptd-s3") -> IoLoop:
    """The loop ``name`` of this process's S3 requests, for one more user (made on first
    use). The leases have a loop of their own: a renewal never waits behind a group."""
    with _shared_lock:
        loop = _shared.get(name)
        if loop is None or loop.closed:
            loop = _shared[name] = IoLoop(name)
            _users[name] = 0
        _users[name] += 1
        return loop


def release_loop(loop: IoLoop) -> None:
    """One user less (a store closed): the last one closes the loop."""
    with _shared_lock:
        name = next((n for n, known in _shared.items() if known is loop), None)
        if name is None:
            last = True  # a loop closed at exit, or replaced
        else:
            _users[name] -= 1
            last = _users[name] <= 0
    if last:
        loop.close()


def close_shared() -> None:
    """Close the process's loops, if any were made (at exit, before finalization)."""
    with _shared_lock:
        loops = list(_shared.values())
    for loop in loops:
        loop.close()


atexit.register(close_shared)
