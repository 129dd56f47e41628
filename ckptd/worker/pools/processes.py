"""The process pool (``--pool process``): handlers run in ``size`` child processes, one job
at a time each, so CPU-bound work uses as many cores.

Each child has a thread in the worker (its slot) that sends it jobs, carries out what its
handler asks (checkpoints, progress, records, results: :mod:`ckptd.worker.pools.child`) and takes
its answer. Children are started by a fork server (a clean process that has imported the
handler's module once, then forks a child in milliseconds), or spawned where there is none.

- A time limit signals the child (:class:`ckptd.TimeLimit` in the handler); at the hard
  limit, or a grace period after a cancel, the child is killed and replaced.
- ``max_jobs_per_child`` and ``max_memory_per_child`` (resident bytes, as the child reports
  after each job) recycle a child between two jobs.
- A child that dies (SIGKILL, the OOM killer, a segfault) fails only its own attempt, which
  is retried; its slot starts a new child and the other slots go on.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from ckptd.core.errors import CkptdError, LeaseLost
from ckptd.core.outcomes import Cancelled, Interrupt
from ckptd.worker import reports
from ckptd.worker.job import Handler, Job, StopFlags
from ckptd.worker.pools.base import AttemptLine, PoolHost
from ckptd.worker.pools.child import CANCEL_SIGNAL, SOFT_SIGNAL, child_main
from ckptd.worker.running import Attempt

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # for a child to say it is ready (a fork server may be starting)
RETIRE_TIMEOUT = 2.0  # for a child to leave after it is told to
STOPPING = "the worker stops"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Child:
    """A child process and the worker's ends of its pipes."""

    def __init__(self, proc: BaseProcess, conn: Connection, alive: Connection) -> None:
        assert proc.pid is not None, "a started process"
        self.proc = proc
        self.conn = conn
        self.alive = alive  # never written: closing it tells the child its parent is gone
        self.pid: int = proc.pid
        self.jobs = 0
        self.rss = 0

    def close(self) -> None:
        self.conn.close()
        self.alive.close()


class _Slot:
    def __init__(self, number: int) -> None:
        self.number = number
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.child: _Child | None = None
        self.current: Attempt | None = None
        # What the worker's own calls for the child's handler (checkpoints) look at: the
        # child gets its stops through signals, so only a kill is set here.
        self.call_flags = StopFlags()


class ProcessPool:
    """Handlers in ``size`` child processes; see the module docstring."""

    kind = "process"

    def __init__(self, host: PoolHost, handler: Handler, size: int, *,
                 max_jobs_per_child: int = 0, max_memory_per_child: int = 0,
                 log_level: str = "info", log_format: str = "auto") -> None:
        self.host = host
        self.handler = handler
        self.size = size
        self.max_jobs = max_jobs_per_child
        self.max_memory = max_memory_per_child
        self.log_config = (log_level, log_format)
        methods = multiprocessing.get_all_start_methods()
        self._mp: ForkServerContext | SpawnContext = (
            multiprocessing.get_context("forkserver") if "forkserver" in methods
            else multiprocessing.get_context("spawn"))
        self._line = AttemptLine()
        self._slots = [_Slot(n) for n in range(size)]
        self.pids_started: list[int] = []

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start a child per slot (waiting until each is ready), then the slot threads."""
        try:
            pickle.dumps(self.handler)
        except Exception as exc:
            raise CkptdError(f"--pool process needs a handler that child processes can import "
                             f"by name (a function defined at the top of a module), not "
                             f"{self.handler!r}: {exc}") from None
        if self._mp.get_start_method() == "forkserver":
            module = getattr(self.handler, "__module__", None)
            self._mp.set_forkserver_preload(
                ["ckptd.worker.pools.child"] + ([module] if module and module != "__main__" else
                []))
        for slot in self._slots:
            slot.child = self._spawn(slot)
        for slot in self._slots:
            slot.thread = threading.Thread(target=self._serve, args=(slot,),
                                           name=f"ckptd-child-{slot.number}", daemon=True)
            slot.thread.start()

    def _spawn(self, slot: _Slot) -> _Child:
        conn, child_conn = self._mp.Pipe()
        alive_r, alive_w = self._mp.Pipe(duplex=False)
        proc = self._mp.Process(target=child_main, name=f"ckptd-child-{slot.number}",
                                args=(child_conn, alive_r, self.handler, *self.log_config,
                                      self.host.around))
        proc.start()
        child_conn.close()
        alive_r.close()
        child = _Child(proc, conn, alive_w)
        try:
            if not conn.poll(START_TIMEOUT):
                raise CkptdError(f"a child process did not start within {START_TIMEOUT:g}s")
            conn.recv()
        except (EOFError, OSError, CkptdError) as exc:
            proc.kill()
            proc.join()
            child.close()
            raise CkptdError(f"cannot start a child process for the handler "
                             f"({_describe_exit(proc.exitcode)}): {exc}") from None
        self.pids_started.append(child.pid)
        log.debug("child %d started for slot %d", child.pid, slot.number)
        return child

    def _retire(self, child: _Child, why: str) -> None:
        try:
            child.conn.send(("stop",))
        except OSError:
            pass
        child.proc.join(RETIRE_TIMEOUT)
        if child.proc.is_alive():
            child.proc.kill()
            child.proc.join()
        child.close()
        log.info("child %d %s (%s)", child.pid, "stopped" if why == STOPPING else "recycled",
                 why)

    def stop(self, now: bool) -> None:
        """Stop the slots and their children (with ``now``, kill them at once)."""
        for _ in self._slots:
            self._line.close_one()
        if now:
            for slot in self._slots:
                child = slot.child
                if child is not None and child.proc.is_alive():
                    child.proc.kill()
        for slot in self._slots:
            if slot.thread is not None:
                slot.thread.join(None if not now else 5.0)
        for slot in self._slots:
            with slot.lock:
                child, slot.child = slot.child, None
            if child is not None:
                self._retire(child, STOPPING)

    # -- what the worker asks --------------------------------------------------------------

    def submit(self, attempt: Attempt) -> None:
        """Run ``attempt`` in the next free child."""
        self._line.put(attempt)

    def waiting(self) -> int:
        """Attempts no slot has taken yet."""
        return self._line.waiting()

    def take_queued(self) -> list[Attempt]:
        """The attempts no slot has taken yet (they will be skipped)."""
        return self._line.take_queued()

    def interrupt(self, attempt: Attempt) -> None:
        """Signal the attempt's child: a time limit, or a cancel."""
        stop = attempt.flags.stop
        signum = CANCEL_SIGNAL if isinstance(stop, Cancelled) else SOFT_SIGNAL
        child = self._child_of(attempt)
        if child is not None and stop is not None:
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self, attempt: Attempt) -> None:
        """Kill the attempt's child (its slot starts a new one)."""
        for slot in self._slots:
            with slot.lock:
                if slot.current is attempt:  # a checkpoint waited for on its behalf ends
                    slot.call_flags.ask(attempt.flags.stop or Cancelled("stopped by force"))
        child = self._child_of(attempt)
        if child is not None:
            log.warning("killing child %d: %s did not stop after it was asked to", child.pid,
                        attempt.label())
            child.proc.kill()

    def stuck(self) -> int:
        """Always 0: a child can always be killed."""
        return 0

    def _child_of(self, attempt: Attempt) -> _Child | None:
        for slot in self._slots:
            with slot.lock:
                if slot.current is attempt:
                    return slot.child
        return None

    # -- in the slot threads ---------------------------------------------------------------

    def _serve(self, slot: _Slot) -> None:
        while True:
            attempt = self._line.take()
            if attempt is None:
                return
            try:
                answer = self._run(slot, attempt)
            except Exception as exc:  # a failure of the pool, not of the handler
                log.exception("the process pool failed to run %s", attempt.label())
                answer = reports.failed_now(attempt.body, exc)
            finally:
                with slot.lock:
                    slot.current = None
            if answer is not None:
                self.host.finish(attempt, answer)
            self._recycle(slot)

    def _run(self, slot: _Slot, attempt: Attempt) -> reports.Answer | None:
        if slot.child is None:
            slot.child = self._spawn(slot)
        child = slot.child
        payload, state = self.host.job_data(attempt)
        with slot.lock:
            slot.current = attempt
            slot.call_flags = StopFlags()
        if not self.host.started(attempt):
            return None
        try:
            child.conn.send(("job", {"body": attempt.body, "payload": payload, "state": state,
                                     "time_limit": attempt.time_limit}))
            while True:
                ready = multiprocessing.connection.wait([child.conn, child.proc.sentinel])
                if child.conn not in ready:
                    break  # the child is gone, and nothing is left to read
                message = child.conn.recv()
                if message[0] == "end":
                    child.jobs += 1
                    child.rss = int(message[2])
                    answer: reports.Answer = message[1]
                    if answer[0] == b"done":
                        answer = self.host.store_result(attempt, answer)
                    return answer
                if message[0] == "send":
                    self.host.job_host.send(message[1], message[2])
                elif message[0] == "call":
                    child.conn.send(self._call(slot, message[1], message[2]))
        except (EOFError, OSError):
            pass
        child.proc.join(5.0)
        how = _describe_exit(child.proc.exitcode)
        child.close()
        slot.child = None
        if attempt.killed:
            return reports.stopped(attempt.body, attempt.flags.stop,
                                   f"its child process was killed ({how})")
        log.error("child %d running %s died (%s); starting another", child.pid,
                  attempt.label(), how)
        return reports.died(attempt.body, how)

    def _call(self, slot: _Slot, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """Carry out a call of the child's Job; return the reply for the child."""
        host = self.host.job_host
        try:
            if name == "checkpoint":
                queue, job_id, number, seq, state, timeout = args
                job = Job(job_id, queue, number, None, _flags=slot.call_flags)
                try:
                    host.checkpoint(job, seq, state, timeout)
                except LeaseLost:
                    # Refused because the job was cancelled (the child's signal may come
                    # after this answer): say that, as a thread's checkpoint does.
                    attempt = slot.current
                    stop = attempt.flags.stop if attempt is not None else None
                    if isinstance(stop, Cancelled):
                        return ("raise", "interrupt", "Cancelled", stop.reason)
                    raise
                return ("ok", None)
            if name == "source_range":
                return ("ok", host.source_range(*args))
            if name == "write_output":
                return ("ok", host.write_output(*args))
            if name == "result_of":
                return ("ok", host.result_of(*args))
            if name == "spawn":
                return ("ok", host.spawn(*args))
            return ("raise", "other", "CkptdError", f"unknown call {name!r}")
        except Interrupt as exc:
            return ("raise", "interrupt", type(exc).__name__, exc.reason)
        except CkptdError as exc:
            return ("raise", "ckptd", exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - the child raises it in the handler
            return ("raise", "other", type(exc).__name__, str(exc))

    def _recycle(self, slot: _Slot) -> None:
        child = slot.child
        if child is None:
            try:
                slot.child = self._spawn(slot)
            except CkptdError as exc:
                log.error("%s (trying again with the next job)", exc)
            return
        why = None
        if self.max_jobs and child.jobs >= self.max_jobs:
            why = f"{child.jobs} jobs, --max-jobs-per-child {self.max_jobs}"
        elif self.max_memory and child.rss > self.max_memory:
            why = (f"{child.rss // 1024} KiB resident, over --max-memory-per-child "
                   f"{self.max_memory // 1024} KiB")
        if why is None:
            return
        slot.child = None
        self._retire(child, why)
        try:
            slot.child = self._spawn(slot)
        except CkptdError as exc:
            log.error("%s (trying again with the next job)", exc)
