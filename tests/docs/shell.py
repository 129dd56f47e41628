"""Documented commands, run as written: in a scratch folder, with ports and paths substituted.

A :class:`Scratch` runs each command line through ``bash`` with this checkout's ``ckptd``
first on the PATH. What the documentation says cannot hold here is substituted, and only
that: the daemon's ports (5550, 5551) become free ports, the addresses 10.0.0.5 (a daemon)
and 10.0.0.6 (a second one, which is down) become 127.0.0.1, ``/etc/ckptd`` and
``/var/lib/ckptd`` move into the scratch folder, and the example job ids (``<id>``, ``ID1``,
``20261127T...``) become ids that exist. Commands that never return are started in the
background and waited for: ``serve`` until the daemon says it is serving (a new ``serve``
replaces the one before, as a restart would), ``worker`` until the daemon says it connected,
``status --watch`` until it drew once (then Ctrl-C). Everything started is stopped by
:meth:`Scratch.stop_all`.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import wait_for
from tests.procs import base_env, free_port

EXAMPLE_ID = "20261127T192416.123456Z-9f3ac1d27b8e4a10"
ID_PLACEHOLDERS = ("<id>", "ID1", "ID2", EXAMPLE_ID)
COMMANDS = ("submit", "submit-file", "status", "ls", "show", "explain", "wait", "retry",
            "cancel", "purge", "fsck", "serve", "worker", "keygen", "doctor", "pause",
            "resume", "limit", "schedules", "logs", "encryption-key", "move", "replay",
            "console-user", "signal", "graph")
START_TIMEOUT = 60.0
RUN_TIMEOUT = 180.0


def _only_another_store(report: str) -> bool:
    """Whether the only problem ``ckptd doctor`` found is that the daemon it asked serves
    another store than the one it was given."""
    problems = [line for line in report.splitlines() if re.match(r"^\w+\s+problem\s", line)]
    return bool(problems) and all("never reach it" in line for line in problems)


@dataclass
class Background:
    """A command that keeps running: a daemon, a worker, a status --watch."""

    command: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self.command!r} did not stop within {timeout:g}s after "
                                 f"signal {sig}:\n{self.output()[-3000:]}") from None


def subcommand(command: str) -> str | None:
    """The ckptd command a line runs (``serve``, ``submit``, ...), or None."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    after = False
    for word in words:
        if word == "ckptd" or word.endswith("/ckptd"):
            after = True
        elif after and word in COMMANDS:
            return word
    return None


def _queue_after(command: str, name: str) -> str | None:
    words = shlex.split(command, comments=True)
    if name in words:
        rest = [w for w in words[words.index(name) + 1:] if not w.startswith("-")]
        return rest[0] if rest else None
    return None


class Scratch:
    """A folder where documented commands run, with the daemons and workers they start."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.control, self.dispatch, self.dead = free_port(), free_port(), free_port()
        self.env = base_env(CKPTD_CONTROL=f"tcp://127.0.0.1:{self.control}",
                            CKPTD_DISPATCH=f"tcp://127.0.0.1:{self.dispatch}")
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env["PATH"]
        self.env["COLUMNS"] = "100"
        self.daemon: Background | None = None
        self.others: list[Background] = []
        self.ids: dict[str, list[str]] = defaultdict(list)  # printed by submit, per queue
        self.ran: list[str] = []
        self._logs = 0

    # -- what is substituted ---------------------------------------------------------------

    def substitute(self, text: str) -> str:
        """Ports, addresses and system paths of the documentation, made to fit here."""
        text = text.replace("10.0.0.6:5550", f"127.0.0.1:{self.dead}")
        text = text.replace("10.0.0.5", "127.0.0.1")
        text = re.sub(r":5550\b", f":{self.control}", text)
        text = re.sub(r":5551\b", f":{self.dispatch}", text)
        for system in ("/etc/ckptd", "/var/lib/ckptd"):
            text = text.replace(system, f"{self.dir}{system}")
        return text

    def fill_ids(self, command: str, pick: dict[str, list[str]] | None = None) -> str:
        """Example ids made real: the ids of the queue the line names, latest first."""
        if not any(p in command for p in ID_PLACEHOLDERS):
            return command
        queue = None
        path = re.search(r"/([\w.-]+)/(?:pending|claimed|done|failed|logs)/", command)
        if path:
            queue = path.group(1)
        name = subcommand(command)
        if queue is None and name is not None:
            queue = _queue_after(command, name)
        assert queue, f"cannot tell the queue of the example ids in {command!r}"
        ids = list((pick or {}).get(queue) or self.ids[queue])
        assert ids, f"no job of queue {queue!r} to stand for the example id in {command!r}"
        command = command.replace("ID1", ids[-2] if len(ids) > 1 else ids[-1])
        command = command.replace("ID2", ids[-1])
        return command.replace("<id>", ids[-1]).replace(EXAMPLE_ID, ids[-1])

    # -- running ---------------------------------------------------------------------------

    def run(self, command: str, codes: tuple[int, ...] = (0,),
            pick: dict[str, list[str]] | None = None) -> str:
        """Run one documented line (``serve``, ``worker`` and ``--watch`` in the background);
        return what it printed. Fails the test when its exit code is not in ``codes``."""
        line = self.fill_ids(self.substitute(command), pick)
        self.ran.append(line)
        name = subcommand(line)
        if name == "serve":
            self.serve(line)
            return ""
        if name == "worker":
            self.worker(line)
            return ""
        if name == "status" and "--watch" in line.split("#", 1)[0]:
            self.watch(line)
            return ""
        done = subprocess.run(["bash", "-c", line], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
        if name == "doctor" and done.returncode == 9 and _only_another_store(done.stdout):
            codes = (*codes, 9)  # this scratch's one daemon serves the store of other examples
        assert done.returncode in codes, (
            f"{command!r} ran as {line!r} and exited {done.returncode} (expected {codes})\n"
            f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}")
        assert "Traceback" not in done.stderr, done.stderr
        if name == "submit":
            queue = _queue_after(line, "submit")
            if queue and done.stdout.strip():
                self.ids[queue].append(done.stdout.strip().splitlines()[0])
        return done.stdout

    def _start(self, line: str) -> Background:
        self._logs += 1
        log = self.dir / f"background-{self._logs}.log"
        # exec: signals reach ckptd itself, not the shell around it
        prefixed = re.sub(r"^((?:\w+=\S+\s+)*)", r"\1exec ", line.strip(), count=1)
        with open(log, "wb") as out:
            proc = subprocess.Popen(["bash", "-c", prefixed], cwd=self.dir, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT)
        return Background(line, proc, log)

    def serve(self, line: str) -> Background:
        """Start a daemon (stopping the one before: a restart) and wait until it serves."""
        if self.daemon is not None:
            code = self.daemon.stop()
            assert code == 0, f"{self.daemon.command!r} exited {code}:\n{self.daemon.output()}"
        daemon = self.daemon = self._start(line)

        def serving() -> bool:
            assert daemon.proc.poll() is None, \
                f"{line!r} exited {daemon.proc.returncode}:\n{daemon.output()}"
            return ": serving control=" in daemon.output()

        wait_for(serving, timeout=START_TIMEOUT, interval=0.05, message=f"{line!r} to serve")
        return daemon

    def connected_workers(self) -> int:
        return self.daemon.output().count("worker connected") if self.daemon else 0

    def worker(self, line: str) -> Background:
        """Start a worker and wait until the daemon says it connected."""
        assert self.daemon is not None, f"{line!r} needs a daemon started before it"
        before = self.connected_workers()
        worker = self._start(line)
        self.others.append(worker)

        def connected() -> bool:
            assert worker.proc.poll() is None, \
                f"{line!r} exited {worker.proc.returncode}:\n{worker.output()}"
            return self.connected_workers() > before

        wait_for(connected, timeout=START_TIMEOUT, interval=0.05,
                 message=f"{line!r} to connect")
        return worker

    def watch(self, line: str) -> None:
        """Run a ``status --watch`` until it drew once, then press Ctrl-C: it exits 0."""
        watcher = self._start(line)
        self.others.append(watcher)
        wait_for(lambda: "queue" in watcher.output() or watcher.proc.poll() is not None,
                 timeout=START_TIMEOUT, interval=0.05, message=f"{line!r} to draw")
        code = watcher.stop(signal.SIGINT)
        assert code == 0 and "Traceback" not in watcher.output(), (code, watcher.output())

    def stop_all(self) -> list[tuple[str, int]]:
        """Stop every background command (workers first); return their exit codes."""
        codes = []
        failures = []
        for background in [*self.others, *([self.daemon] if self.daemon else [])]:
            try:  # every one is stopped, even when one of them would not stop in time
                codes.append((background.command, background.stop()))
            except AssertionError as exc:
                failures.append(str(exc))
        self.others = []
        self.daemon = None
        assert not failures, "\n".join(failures)
        return codes
