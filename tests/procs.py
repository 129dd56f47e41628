"""Real ckptd processes for tests: a daemon and workers on 127.0.0.1, started and killed.

Everything runs as a separate ``python -m ckptd`` process, talking real ZeroMQ over loopback
TCP, on a store in the test's temporary folder. Handles remember what they started, and the
factories stop every process at the end of the test (SIGKILL if SIGTERM is not enough).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ckptd.client.client import Client
from tests.helpers import wait_for

HANDLERS_DIR = os.path.join(os.path.dirname(__file__), "integration")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (their local ports)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_LOW = 20000  # ports the tests pick from: below the ephemeral range


_HELD = os.path.join(tempfile.gettempdir(), "ckptd-test-ports")
_HOLD_FOR = 900.0  # seconds a port handed out stays out of other tests' picks


def _hold(port: int) -> bool:
    """Claim ``port`` for this test among all test processes of the machine (xdist's workers
    and other runs): a port checked free is bound only a moment later, by a daemon or weed,
    and another test must not be handed the same port in between. A claim older than
    ``_HOLD_FOR`` has ended."""
    mark = os.path.join(_HELD, str(port))
    try:
        os.makedirs(_HELD, exist_ok=True)
        if _create(mark):
            return True
        if time.time() - os.stat(mark).st_mtime < _HOLD_FOR:
            return False
        os.unlink(mark)  # an old claim: take it again; only one taker wins the create
        return _create(mark)
    except FileNotFoundError:
        return _create(mark)
    except OSError:  # the folder is another user's: hold nothing (the check alone, as before)
        return True


def _create(mark: str) -> bool:
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and no other test was
    handed in the last minutes, chosen below the ephemeral range: a port taken from that
    range (bind to 0) can be taken again as the local port of some outgoing connection (a
    worker reconnecting during a daemon's restart) before the daemon binds it, and the bind
    then fails."""
    high = max(_LOW + 1000, _ephemeral_low())
    for _ in range(400):
        port = random.randrange(_LOW, high)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _hold(port):
            return port
    with socket.socket() as sock:  # the low range is crowded: take what the kernel gives
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    """The environment of child processes: this checkout first on the path, quiet logs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, HANDLERS_DIR, env.get("PYTHONPATH", "")])
    env.setdefault("CKPTD_LOG_LEVEL", "info")
    for key in list(env):
        if key.startswith("CKPTD_") and key not in ("CKPTD_LOG_LEVEL",) and key not in extra:
            del env[key]  # settings of the developer's shell must not leak into tests
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env.update(extra)
    return env


@dataclass
class DaemonProcess:
    """A ``ckptd serve`` process and how to reach it."""

    root: str
    log_path: str
    settings: dict[str, str]
    control_port: int = field(default_factory=free_port)
    dispatch_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env_extra: dict[str, str] = field(default_factory=dict)
    program: list[str] = field(default_factory=lambda: ["-m", "ckptd"])

    @property
    def control(self) -> str:
        return f"tcp://127.0.0.1:{self.control_port}"

    def start(self, wait: bool = True) -> DaemonProcess:
        ready = f"{self.log_path}.ready"
        if os.path.exists(ready):
            os.unlink(ready)
        args = [sys.executable, *self.program, "--root", self.root]
        for key, value in self.settings.items():
            if key in ("fsync",):
                args += [f"--{key}", value]
        args += ["serve", "--control", self.control,
                 "--dispatch", f"tcp://127.0.0.1:{self.dispatch_port}", "--ready-file", ready]
        env = base_env(**{f"CKPTD_{k.upper()}": v for k, v in self.settings.items()
                          if k != "fsync"}, **self.env_extra)
        log = open(self.log_path, "ab")
        log.write(f"--- start {self.starts + 1} ---\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=REPO)
        log.close()
        self.starts += 1
        if wait:
            wait_for(lambda: os.path.exists(ready) or self.proc.poll() is not None,  # type: ignore[union-attr]
                     timeout=30, message="the daemon to be ready")
            if self.proc.poll() is not None:
                if self.starts == 1 and self.proc.returncode == 4 \
                        and "the address is in use" in self.log():
                    # Another test's daemon took the port between free_port() and the bind
                    # (a first start only: a restart keeps the addresses its workers know).
                    self.starts = 0
                    self.control_port, self.dispatch_port = free_port(), free_port()
                    return self.start(wait)
                raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n"
                                     + self.log())
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait; return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()

    def client(self, timeout: float = 10) -> Client:
        return Client(self.control, timeout=timeout)


@dataclass
class WorkerProcess:
    """A ``ckptd worker`` process."""

    proc: subprocess.Popen[bytes]
    log_path: str

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()


class Processes:
    """Starts daemons and workers for one test and stops them all at its end."""

    def __init__(self, tmp_path: Any) -> None:
        self.tmp = str(tmp_path)
        self.daemons: list[DaemonProcess] = []
        self.workers: list[WorkerProcess] = []

    def daemon(self, root: str | None = None, start: bool = True,
               env: dict[str, str] | None = None, program: list[str] | None = None,
               **settings: Any) -> DaemonProcess:
        """A daemon on ``root`` (default: <tmp>/store) with settings as CKPTD_* values."""
        number = len(self.daemons) + 1
        handle = DaemonProcess(root or os.path.join(self.tmp, "store"),
                               os.path.join(self.tmp, f"daemon{number}.log"),
                               {k: str(v) for k, v in settings.items()},
                               env_extra=env or {})
        if program:
            handle.program = program
        self.daemons.append(handle)
        return handle.start() if start else handle

    def worker(self, daemon: DaemonProcess | str, queue: str | list[str], handler: str,
               concurrency: int = 1, prefetch: int = 0, env: dict[str, str] | None = None,
               name: str | None = None, extra: list[str] | None = None) -> WorkerProcess:
        """A worker of ``queue`` running ``handlers.<handler>`` (or MODULE:FUNCTION)."""
        number = len(self.workers) + 1
        log_path = os.path.join(self.tmp, f"worker{number}.log")
        connect = daemon if isinstance(daemon, str) else daemon.control
        queues = [queue] if isinstance(queue, str) else queue
        args = [sys.executable, "-m", "ckptd", "worker", "--connect", connect,
                "-c", str(concurrency), "--prefetch", str(prefetch),
                "--name", name or f"w{number}"]
        for q in queues:
            args += ["--queue", q]
        args += (extra or []) + [handler if ":" in handler else f"handlers:{handler}"]
        log = open(log_path, "ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=HANDLERS_DIR,
                                env=base_env(**(env or {})))
        log.close()
        handle = WorkerProcess(proc, log_path)
        self.workers.append(handle)
        return handle

    def stop_all(self) -> None:
        """Stop the workers first, while their daemons can still confirm their answers (a
        worker whose daemon is gone waits for confirmations it will never get: it is killed
        after a few seconds, at once when no daemon is left), then the daemons; SIGKILL
        whatever is left."""
        daemon_alive = any(d.alive() for d in self.daemons)
        # A worker still running a job after a second asks a second time, as an operator
        # would: it gives its jobs back and exits now, so its daemon has none to wait for.
        self._stop([w.proc for w in self.workers], grace=5 if daemon_alive else 0,
                   again_after=1.0)
        self._stop([d.proc for d in self.daemons if d.proc], grace=15)

    @staticmethod
    def _stop(procs: list[subprocess.Popen[bytes]], grace: float,
              again_after: float | None = None) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        if again_after is not None and grace > again_after:
            waited = time.monotonic() + again_after
            for proc in procs:
                try:
                    proc.wait(max(0.01, waited - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def read_lines(path: str) -> list[str]:
    """The lines of a file, [] when it does not exist yet."""
    try:
        with open(path) as handle:
            return [line.rstrip("\n") for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def job_files(root: str, queue: str, state: str) -> dict[str, dict[str, Any]]:
    """The parsed job files of one state folder, by id."""
    folder = os.path.join(root, queue, state)
    found = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    for name in names:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as handle:
                found[name[:-5]] = json.load(handle)
    return found


def count_files(root: str, queue: str, state: str) -> int:
    """How many job files a state folder holds."""
    try:
        return sum(1 for n in os.listdir(os.path.join(root, queue, state)) if n.endswith(".json"))
    except FileNotFoundError:
        return 0


@pytest.fixture
def procs(tmp_path: Any) -> Iterator[Processes]:
    """Start daemons and workers; every one is stopped when the test ends."""
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()
