"""CURVE with real processes: only authorized keys take jobs or submit work, and revoking works.

Refused attempts are counted by the daemon (``status()["drops"]``, by socket and reason):
``auth_mechanism`` (a client without keys; or ``handshake`` when that client hung up first),
``auth_crypto`` (a wrong server key), ``auth_denied`` (a client key not in authorized_keys).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import zmq
import zmq.auth

from ckptd.client.client import Client
from ckptd.core.errors import AuthError, DaemonUnavailable
from ckptd.wire import protocol
from ckptd.wire.security import ClientCurve
from tests.helpers import wait_for
from tests.procs import REPO, DaemonProcess, Processes, base_env, count_files, job_files

from .conftest import KeyPair, Keys

REASONS = ("auth_mechanism", "auth_crypto", "auth_denied")


def drops(client: Client) -> Counter[str]:
    """The daemon's drop counters."""
    return Counter(client.status()["drops"])


def refused(client: Client, socket: str, reason: str) -> int:
    """Refused handshakes of one kind on one socket."""
    counts = drops(client)
    # A client without keys sees the mismatch too and may hang up before the daemon does.
    also = counts[f"{socket}:handshake"] if reason == "auth_mechanism" else 0
    return counts[f"{socket}:{reason}"] + also


def bad_clients(keys: Keys) -> dict[str, tuple[ClientCurve | None, list[str]]]:
    """One client of each refused kind (its keys, its worker options), by the reason the
    daemon counts it under."""
    stranger = keys.client("stranger", authorize=False)  # a key nobody authorized
    known = keys.client("known")  # an authorized key, but used with the wrong server key
    impostor = keys.client("impostor", authorize=False)  # plays the server's part
    return {"auth_mechanism": (None, []),
            "auth_crypto": (known.curve(impostor), known.worker_args(impostor)),
            "auth_denied": (stranger.curve(keys.server), stranger.worker_args(keys.server))}


def dealer(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, curve: ClientCurve | None
           ) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply_client(sock)
    sock.connect(endpoint)
    return sock


def test_only_authorized_workers_get_jobs_and_every_other_attempt_is_refused(
        procs: Processes, keys: Keys) -> None:
    admin, good = keys.client("admin"), keys.client("good")
    bad = bad_clients(keys)
    daemon = procs.daemon(**keys.settings())  # reads authorized_keys now (again on SIGHUP)
    with Client(daemon.control, curve=admin.curve(keys.server)) as client:
        ids = client.submit_many("q", [{"n": n} for n in range(20)])

        # Phase 1: workers with no keys, a wrong server key, an unknown client key, and raw
        # DEALERs of each kind sending hello straight to the dispatch socket.
        workers = [procs.worker(daemon, "q", "echo", name=f"bad-{reason}", extra=extra)
                   for reason, (_, extra) in bad.items()]
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        hello = protocol.message(b"hello", {"worker": "thief", "queues": ["q"], "slots": 20})
        socks = [dealer(ctx, f"tcp://127.0.0.1:{daemon.dispatch_port}", curve)
                 for curve, _ in bad.values()]
        try:
            for sock in socks:
                sock.send_multipart(hello)  # queued until a handshake succeeds: never
            wait_for(lambda: all(refused(client, s, r) >= 1 for r in REASONS
                                 for s in ("control", "dispatch")),
                     timeout=30, message="refusals of every kind on both sockets")
            assert all(not sock.poll(0) for sock in socks), "a refused DEALER received a job"
        finally:
            for sock in socks:
                sock.close(0)
            ctx.term()
        assert count_files(daemon.root, "q", "pending") == 20
        assert count_files(daemon.root, "q", "claimed") == 0
        assert client.status()["queues"]["q"]["claimed"] == 0
        for worker in workers:
            assert worker.alive()  # still knocking
            worker.terminate()

        # Phase 2: clients in this process, each refused kind in turn: every request fails,
        # and the daemon counts at least one refused handshake per request.
        for reason, (curve, _) in bad.items():
            before = refused(client, "control", reason)
            pings = 5
            # Each is refused: said at once when the handshake tells why (AuthError, issue
            # 22), else within the timeout.
            for _ in range(pings):
                with Client(daemon.control, timeout=0.3, curve=curve) as stranger:
                    with pytest.raises((DaemonUnavailable, AuthError)):
                        stranger.ping()
            with Client(daemon.control, timeout=0.3, curve=curve) as stranger:
                with pytest.raises((DaemonUnavailable, AuthError)):
                    stranger.submit("q", {"stolen": True})
            attempts = pings + 1
            wait_for(lambda r=reason, b=before, a=attempts:  # type: ignore[misc]
                     refused(client, "control", r) - b >= a,
                     timeout=10, message=f"{attempts} refusals counted as {reason}")
        assert sorted(job_files(daemon.root, "q", "pending")) == sorted(ids), \
            "nothing was submitted by a refused client"

        # Phase 3: the authorized worker takes every job.
        procs.worker(daemon, "q", "echo", name="good", extra=good.worker_args(keys.server))
        client.wait_many("q", ids, timeout=60)
    done = job_files(daemon.root, "q", "done")
    assert sorted(done) == sorted(ids)
    assert {job["worker"] for job in done.values()} == {"good"}
    assert daemon.alive()


def test_a_revoked_key_is_refused_after_sighup(procs: Processes, keys: Keys) -> None:
    admin, first, second = keys.client("admin"), keys.client("first"), keys.client("second")
    daemon = procs.daemon(lease="3s", heartbeat="0.5s", backoff_base="0.1s", **keys.settings())
    procs.worker(daemon, "q", "echo", name="first", extra=first.worker_args(keys.server))
    procs.worker(daemon, "q", "echo", name="second", extra=second.worker_args(keys.server))
    with Client(daemon.control, curve=admin.curve(keys.server)) as client:
        wait_for(lambda: client.status()["workers"] == 2, timeout=30,
                 message="both workers connected")
        with Client(daemon.control, curve=first.curve(keys.server)) as as_first:
            assert as_first.ping()["pong"]
        keys.revoke("first")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        # The revocation cuts every connection: a request in flight then would lose its reply,
        # so this waits on the log, not on a request, until the reload is over.
        wait_for(lambda: "revoked first" in daemon.log()
                 and "reloaded the settings" in daemon.log(), timeout=10,
                 message="the revocation")
        wait_for(lambda: drops(client)["dispatch:auth_denied"] >= 1, timeout=10,
                 message="the revoked worker's reconnection refused")
        with Client(daemon.control, timeout=0.5, curve=first.curve(keys.server)) as as_first:
            with pytest.raises((DaemonUnavailable, AuthError)):
                as_first.ping()
        ids = client.submit_many("q", [{"n": n} for n in range(30)])
        client.wait_many("q", ids, timeout=60)
    done = job_files(daemon.root, "q", "done")
    assert {done[i]["worker"] for i in ids} == {"second"}, "the revoked worker ran nothing"


def test_the_cli_talks_curve_with_flags_or_environment(procs: Processes, keys: Keys) -> None:
    admin = keys.client("admin")
    daemon = procs.daemon(**keys.settings())
    base = [sys.executable, "-m", "ckptd", "--connect", daemon.control]
    flags = ["--server-key", keys.server.public, "--client-key", admin.secret]
    ok = subprocess.run(base + flags + ["submit", "q", '{"a": 1}'], capture_output=True,
                        text=True, timeout=60, env=base_env(), cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    via_env = subprocess.run(base + ["status", "--json"], capture_output=True, text=True,
                             timeout=60, cwd=REPO,
                             env=base_env(CKPTD_SERVER_KEY=keys.server.public,
                                          CKPTD_CLIENT_KEY=admin.secret))
    assert via_env.returncode == 0 and '"pending": 1' in via_env.stdout, via_env.stderr
    no_keys = subprocess.run(base + ["status"], capture_output=True, text=True, timeout=60,
                             env=base_env(), cwd=REPO)
    assert no_keys.returncode == 5 and "uses CURVE keys and this client has none" in \
        no_keys.stderr, no_keys.stderr


def serve(daemon: DaemonProcess, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``ckptd serve`` to completion (for daemons that must refuse to start)."""
    args = [sys.executable, "-m", "ckptd", "--root", daemon.root, "serve", "--control",
            daemon.control, "--dispatch", f"tcp://127.0.0.1:{daemon.dispatch_port}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=REPO,
                          env=base_env(**{f"CKPTD_{k.upper()}": v for k, v in env.items()}))


def test_the_daemon_refuses_a_secret_key_that_others_can_read(procs: Processes,
                                                              keys: Keys) -> None:
    daemon = procs.daemon(start=False)
    os.chmod(keys.server.secret, 0o640)
    result = serve(daemon, **keys.settings())
    assert result.returncode == 5
    assert "readable by group or others" in result.stderr
    assert f"chmod 600 {keys.server.secret}" in result.stderr


@pytest.mark.parametrize("missing", ["curve_secret_key", "authorized_keys"])
def test_curve_needs_both_the_secret_key_and_the_authorized_keys(procs: Processes, keys: Keys,
                                                                 missing: str) -> None:
    settings = keys.settings()
    del settings[missing]
    result = serve(procs.daemon(start=False), **settings)
    assert result.returncode == 5 and "CURVE needs both" in result.stderr


def test_a_missing_authorized_keys_folder_is_an_error(procs: Processes, keys: Keys,
                                                      tmp_path: Path) -> None:
    result = serve(procs.daemon(start=False), curve_secret_key=keys.server.secret,
                   authorized_keys=str(tmp_path / "nowhere"))
    assert result.returncode == 5 and "authorized_keys folder" in result.stderr


@pytest.mark.slow
def test_keygen_writes_a_pair_with_safe_modes_and_never_overwrites(tmp_path: Path) -> None:
    if not zmq.has("curve"):
        pytest.skip("this libzmq has no CURVE support")
    folder = tmp_path / "keys"
    args = [sys.executable, "-m", "ckptd", "keygen", str(folder), "--name", "vm2"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=REPO,
                           env=base_env())
    assert first.returncode == 0, first.stderr
    public, secret = folder / "vm2.key", folder / "vm2.key_secret"
    assert public.stat().st_mode & 0o777 == 0o644
    assert secret.stat().st_mode & 0o777 == 0o600
    pair = KeyPair(str(public), str(secret))
    assert zmq.auth.load_certificate(public)[1] is None  # the public file holds no secret
    assert pair.curve(pair).public == zmq.auth.load_certificate(secret)[0]
    before = secret.read_bytes()
    again = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=REPO,
                           env=base_env())
    assert again.returncode != 0 and "already exists" in again.stderr
    assert secret.read_bytes() == before
