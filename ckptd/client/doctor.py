"""``ckptd doctor``: what a newcomer runs when something does not work.

It checks the settings, the store (there, writable, on what filesystem), the daemon
(reachable, active or standing by, CURVE or not, the same store), the clocks of this host
and the daemon, and the lease and heartbeat. Each finding says what was found and, when it
is not fine, how to fix it. A *problem* is something that will not work; a *warning* is a
setup that works but is slow or risky.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ckptd.core.answer_types import DaemonInfo, StatusAnswer
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, DaemonUnavailable
from ckptd.core.timefmt import format_duration
from ckptd.store import is_local, store_from_settings
from ckptd.store.local.filesystem import filesystem_of

OK = "ok"
NOTE = "note"
WARNING = "warning"
PROBLEM = "problem"

DEFAULT_TIMEOUT = 3.0
SKEW_WARNING = 1.0  # seconds between this host's clock and the daemon's


@dataclass(frozen=True)
class Finding:
    """One thing the doctor looked at: what it found, and the fix when it is not fine."""

    topic: str  # settings | store | daemon | clock | lease
    level: str  # ok | note | warning | problem
    text: str
    fix: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The finding as JSON."""
        return asdict(self)


def _path_of(root: str) -> str:
    return os.path.abspath(os.path.expanduser(root[len("file://"):]
                                              if root.startswith("file://") else root))


# -- the store ---------------------------------------------------------------------------------

def check_store(settings: Settings) -> list[Finding]:
    """The store of ``settings.root``: there, writable, its queues, its filesystem."""
    root = settings.root
    if root.startswith("memory://"):
        return [Finding("store", NOTE, f"{root} lives inside one process: only for tests")]
    if not is_local(root):
        return _check_bucket(settings)
    path = _path_of(root)
    if not os.path.exists(path):
        return _missing_root(path) + _filesystem(path)  # where it would be made
    if not os.path.isdir(path):
        return [Finding("store", PROBLEM, f"{path} is a file, not a folder",
                        "give --root (or CKPTD_ROOT, root in the config) a folder")]
    findings = [_writable(path)]
    try:
        queues = store_from_settings(settings).queues()
        names = ", ".join(queues[:8]) + (", ..." if len(queues) > 8 else "")
        findings.append(Finding("store", OK, f"{path}: {len(queues)} queue(s)"
                                + (f" ({names})" if queues else "")))
    except CkptdError as exc:
        findings.append(Finding("store", PROBLEM, f"cannot list {path}: {exc}"))
    return findings + _filesystem(path)


def _missing_root(path: str) -> list[Finding]:
    parent = os.path.dirname(path)
    while not os.path.exists(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    if os.access(parent, os.W_OK | os.X_OK):
        return [Finding("store", WARNING, f"{path} does not exist yet (the first submit or "
                        "ckptd serve creates it)",
                        "if the store should be there already, check the spelling of --root "
                        "(or CKPTD_ROOT): a mistyped root is a new, empty store")]
    return [Finding("store", PROBLEM, f"{path} does not exist, and {parent} is not writable "
                    "to create it",
                    f"create it for the user that runs ckptd (sudo mkdir -p {path} && sudo "
                    f"chown $USER {path}), or choose another --root")]


def _writable(path: str) -> Finding:
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ckptd-doctor-"):
            pass
    except OSError as exc:
        return Finding("store", PROBLEM, f"cannot write in {path}: {exc.strerror}",
                       "give the user that runs ckptd write access to the store (chown or "
                       "chmod), or run ckptd as the user that owns it")
    return Finding("store", OK, f"{path} is writable")


def _filesystem(path: str) -> list[Finding]:
    fs = filesystem_of(path)
    if fs is None:
        return [Finding("store", NOTE, "the filesystem type is unknown (no "
                        "/proc/self/mountinfo)")]
    where = f"{fs.fstype} ({fs.source}, mounted at {fs.mount_point})"
    if fs.fstype in ("ext3", "ext4") and fs.journal is False:
        return [Finding("store", WARNING, f"the store is on {where} without a journal: "
                        "creating files after deletes costs about 0.5 ms each, so a busy queue "
                        "is slow",
                        f"turn the journal on (tune2fs -O has_journal {fs.source}, while it is "
                        "unmounted) or put the store on another filesystem")]
    if fs.network:
        return [Finding("store", WARNING, f"the store is on a network filesystem, {where}: "
                        "files other hosts put into pending/ are only seen at the next "
                        "rescan, and locks may not hold",
                        "run the daemon on the machine that holds the disk (workers only need "
                        "--connect), or use a bucket (s3://)")]
    if fs.memory:
        return [Finding("store", WARNING, f"the store is in memory, {where}: every job is "
                        "lost at a reboot",
                        "fine for tests; keep jobs that must survive a reboot on a disk")]
    journal = " with a journal" if fs.journal else ""
    return [Finding("store", OK, f"filesystem {where}{journal}")]


def _check_bucket(settings: Settings) -> list[Finding]:
    findings = []
    if settings.root.startswith(("s3://", "s3a://")):
        from ckptd.store.s3.backend import describe_bucket

        try:
            findings.append(Finding("store", NOTE, f"{settings.root}: "
                                    f"{describe_bucket(settings)}"))
        except ValueError as exc:
            return [Finding("store", PROBLEM, f"the bucket's settings cannot work: {exc}",
                            "correct the AWS config file or [storage_options]")]
    try:
        store = store_from_settings(settings)
        try:
            store.probe_access()
            queues = store.queues()
        finally:
            store.close()
    except CkptdError as exc:
        return findings + [Finding("store", PROBLEM, str(exc),
                                   "check the bucket's name, the endpoint and the "
                                   "credentials (the settings are in the line above)")]
    return findings + [Finding("store", OK, f"{settings.root} answers: {len(queues)} "
                                            "queue(s)")]


# -- lease and heartbeat ----------------------------------------------------------------------

def check_lease(lease: float, heartbeat: float, derived: bool | None, whose: str
                ) -> list[Finding]:
    """The lease and heartbeat ``whose`` (this host's settings, or the daemon's)."""
    how = " (derived: a third of the lease, at most 5s)" if derived else ""
    text = f"{whose}: lease {format_duration(lease)}, heartbeat {format_duration(heartbeat)}{how}"
    if heartbeat > lease / 2:
        return [Finding("lease", WARNING, text + ": one late heartbeat loses the lease",
                        "set heartbeat to a third of the lease, or leave it unset")]
    return [Finding("lease", OK, text)]


# -- the daemon --------------------------------------------------------------------------------

def check_daemon(settings: Settings, connect: str | None, *, root_given: bool,
                 timeout: float = DEFAULT_TIMEOUT,
                 clock: Callable[[], float] = time.time) -> list[Finding]:
    """The daemon at ``connect`` (else the settings' control address): reachable, its role,
    CURVE, its store, its clock and its lease."""
    from ckptd.client.client import Client
    from ckptd.wire.security import client_curve

    address = connect or settings.control
    try:
        curve = client_curve(settings)
        client = Client(address, timeout=timeout, curve=curve)
    except CkptdError as exc:
        return [Finding("daemon", PROBLEM, str(exc))]
    address = ",".join(client.endpoints)
    try:
        before = clock()
        answer = client.status()
        after = clock()
    except DaemonUnavailable:
        return [_unreachable(address, connect is not None, curve is not None, settings)]
    except CkptdError as exc:
        return [Finding("daemon", PROBLEM, f"the daemon at {address} answered: {exc}")]
    finally:
        client.close()
    info = answer.get("daemon")
    findings = [_describe(address, answer, info, curve is not None)]
    store = info.get("store") if info else None
    if store and store.get("available") is False:
        findings.append(Finding("daemon", PROBLEM, f"the daemon's store {answer.get('root')} "
                                f"does not answer: {store.get('error')}",
                                "fix the store first: every submit is refused until it "
                                "answers (the daemon probes it and goes on by itself)"))
    theirs = answer.get("root")
    if (root_given and isinstance(theirs, str) and is_local(settings.root)
            and is_local(theirs) and _path_of(theirs) != _path_of(settings.root)):
        findings.append(Finding(
            "daemon", PROBLEM, f"the daemon serves {theirs}, but the root here is "
            f"{_path_of(settings.root)}: jobs submitted with this --root never reach it",
            f"use --root {theirs}, or go through the daemon with --connect {address}"))
    if info and isinstance(info.get("time"), (int, float)):
        findings.append(_clock(float(info["time"]), before, after))
    if info and isinstance(info.get("lease_s"), (int, float)) and isinstance(
            info.get("heartbeat_s"), (int, float)):
        findings += check_lease(float(info["lease_s"]), float(info["heartbeat_s"]), None,
                                "the daemon's")
    return findings


def _unreachable(address: str, explicit: bool, curve: bool, settings: Settings) -> Finding:
    fixes = [f"start one (ckptd serve --root {settings.root})",
             "check the address: it is the control port (5550 by default), not the "
             "dispatch port"]
    if not curve:
        fixes.append("if the daemon uses CURVE, pass --server-key and --client-key")
    if explicit:
        return Finding("daemon", PROBLEM, f"no daemon answers at {address}", "; ".join(fixes))
    return Finding("daemon", WARNING, f"no daemon answers at {address} (the control address "
                   "of the settings; give --connect to ask another)", "; ".join(fixes))


def _describe(address: str, answer: StatusAnswer, info: DaemonInfo | None, curve: bool
              ) -> Finding:
    role = info.get("role", "active") if info else "active"
    leader = ((info.get("leader") if info else None) or {}).get("active")
    uptime = info.get("uptime_s") if info else None
    curve = curve or bool(info and info.get("curve"))
    text = (f"daemon {info.get('name', '?') if info else '?'} at {address}: {role}"
            + (f" (the active one is {leader})" if role == "standby" and leader else "")
            + (f", up {format_duration(float(uptime))}" if uptime is not None else "")
            + f", {answer.get('workers', 0)} worker(s), serving {answer.get('root', '?')}, "
            + ("CURVE on (encrypted, keys checked)" if curve else "CURVE off"))
    if role == "standby":
        return Finding("daemon", WARNING, text, "another daemon leads: give clients and "
                       "workers every daemon's address (--connect a:5550,b:5550)")
    from ckptd.wire.endpoints import host_of, is_loopback

    host = host_of(address.split(",")[0])
    if not curve and host is not None and not is_loopback(host):
        return Finding("daemon", WARNING, text + ", over the network",
                       "anyone who reaches the port can take jobs: set up CURVE keys "
                       "(docs/guide/security.md)")
    return Finding("daemon", OK, text)


def _clock(theirs: float, before: float, after: float) -> Finding:
    skew = (before + after) / 2 - theirs
    margin = (after - before) / 2
    if abs(skew) - margin > SKEW_WARNING:
        side = "ahead of" if skew > 0 else "behind"
        return Finding("clock", WARNING, f"this host's clock is {format_duration(abs(skew))} "
                       f"{side} the daemon's: delays, lead times and --older-than disagree "
                       "between them",
                       "keep clocks in sync with NTP (timedatectl set-ntp true, or chrony)")
    return Finding("clock", OK, f"this host's clock is within "
                   f"{format_duration(abs(skew) + margin)} of the daemon's")


# -- all of it ---------------------------------------------------------------------------------

def diagnose(load: Callable[[], Settings], fallback: Callable[[], Settings],
             connect: str | None, *, root_given: bool, timeout: float = DEFAULT_TIMEOUT
             ) -> list[Finding]:
    """Every check. ``load`` reads the settings (file, environment, flags); when they are
    invalid that is the first problem and ``fallback`` gives settings to go on with."""
    try:
        settings = load()
        problems: list[Finding] = []
        lease = check_lease(settings.lease, settings.heartbeat, settings.heartbeat_derived,
                            "the settings here")
    except CkptdError as exc:
        problems, lease = [Finding("settings", PROBLEM, str(exc))], []
        settings = fallback()
    if connect and not root_given:  # a worker's or a client's machine: no store here
        store = [Finding("store", NOTE, "not checked: with --connect, workers and clients "
                         "need no store on this machine (give --root to check one)")]
    else:
        store = check_store(settings)
    return (problems + store + lease
            + check_daemon(settings, connect, root_given=root_given, timeout=timeout))


def count(findings: list[Finding], level: str) -> int:
    """How many findings are at ``level``."""
    return sum(1 for f in findings if f.level == level)
