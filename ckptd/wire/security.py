"""CURVE keys, and who may talk to the daemon.

With ``curve_secret_key`` set, every socket of the daemon is a CURVE server: libzmq encrypts
and authenticates in C, so no message pays for crypto in Python. Who may connect is decided
once per connection by a ZAP handler (the ``inproc://zeromq.zap.01`` endpoint that libzmq
asks during each handshake), served by the daemon's own loop: a client whose public key is
not in the ``authorized_keys`` folder is refused (ironhouse, never allow-any). SIGHUP re-reads
the folder; when a key was removed, every connection is cut (the sockets are unbound and
bound again), so a revoked client must handshake again and is refused, while the others
reconnect by themselves.

Socket monitors report every failed handshake (no keys, a wrong server key, a refused client
key, bytes that are not ZeroMQ); the daemon counts them with its dropped messages.

Key files are ZeroMQ certificates, as ``zmq.auth.create_certificates`` writes them:
``NAME.key`` holds the public key, ``NAME.key_secret`` both keys. Secret key files must not
be readable by group or others.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass

import zmq
from zmq.utils import z85

from ckptd.core.config import Settings
from ckptd.core.errors import AuthError, CkptdError, ConfigError, FileExists
from ckptd.core.names import is_valid_name
from ckptd.wire.frames import waiting_messages

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"ckptd"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
REBIND_TIMEOUT = 5.0

_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_PROTOCOL_REASONS: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "auth_mechanism",  # e.g. a client without keys
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "auth_crypto",  # e.g. a wrong server key
}


def require_curve() -> None:
    """Raise AuthError when this libzmq was built without CURVE."""
    if not zmq.has("curve"):
        raise AuthError("this libzmq has no CURVE support; install pyzmq from its wheels "
                        "(pip install --force-reinstall pyzmq), which bundle libsodium")


# -- key files ------------------------------------------------------------------------------

def keygen(folder: str, name: str = "ckptd") -> tuple[str, str]:
    """Write a new key pair ``NAME.key`` (public, 0644) and ``NAME.key_secret`` (0600).

    Creates ``folder`` (mode 0700) when needed; never overwrites a key file. Returns the
    paths (public, secret).
    """
    require_curve()
    if not is_valid_name(name):
        raise ConfigError(f"invalid key name {name!r}: use letters, digits, '-', '_', '.'")
    public, secret = zmq.curve_keypair()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    base = os.path.join(folder, name)
    public_path, secret_path = base + PUBLIC_SUFFIX, base + SECRET_SUFFIX
    for path in (public_path, secret_path):
        if os.path.lexists(path):
            raise FileExists(f"{path} already exists: remove it first, or choose another "
                             "--name (a key pair is never overwritten)")
    # The secret file is created 0600 from the start: it is never readable by others.
    _write_certificate(secret_path, public, secret, 0o600)
    _write_certificate(public_path, public, None, 0o644)
    return public_path, secret_path


def _write_certificate(path: str, public: bytes, secret: bytes | None, mode: int) -> None:
    kind = "secret" if secret is not None else "public"
    lines = [f"#   ZeroMQ CURVE {kind} certificate, written by ckptd keygen",
             "#   Exchange securely, or use a secure mechanism to verify the contents",
             "#   of this file after exchange." if secret is None
             else "#   THIS FILE IS SECRET: keep it mode 0600 and never copy it elsewhere.",
             "metadata", "curve", f'    public-key = "{public.decode()}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # exactly this mode, whatever the umask
        os.write(fd, ("\n".join(lines) + "\n").encode())
    finally:
        os.close(fd)


def check_private(path: str) -> None:
    """Raise AuthError unless ``path`` is a secret key file only its owner can read."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise AuthError(f"cannot read the secret key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise AuthError(f"the secret key file {path} is readable by group or others (mode "
                        f"{mode:04o}): run chmod 600 {path}")


def _read_keys(path: str) -> tuple[bytes, bytes | None]:
    import zmq.auth  # here: it imports asyncio (~20 ms), needed only with key files

    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read the key file {path}: {exc}; expected a file written "
                        "by ckptd keygen") from None
    for key in (public, secret):
        if key is not None and not _valid_key(key):
            raise AuthError(f"{path} does not hold a valid CURVE key (40 Z85 characters)")
    return public, secret


def _valid_key(key: bytes) -> bool:
    if len(key) != 40:
        return False
    try:
        return len(z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError):
        return False


def load_public_key(path: str) -> bytes:
    """Return the public key (Z85) in a key file (``NAME.key`` or ``NAME.key_secret``)."""
    return _read_keys(path)[0]


def load_key_pair(path: str) -> tuple[bytes, bytes]:
    """Return (public, secret) of a ``NAME.key_secret`` file, checking its mode.

    What kind of file it is comes first: a public key given for a secret one is named as
    such (a chmod would not help it)."""
    if not os.path.exists(path):
        check_private(path)  # says it cannot be read, and why
    public, secret = _read_keys(path)
    if secret is None:
        beside = path[:-len(PUBLIC_SUFFIX)] + SECRET_SUFFIX if path.endswith(PUBLIC_SUFFIX) \
            else f"the NAME{SECRET_SUFFIX} file"
        raise AuthError(f"{path} is a public key; give the secret key, {beside} (written "
                        "beside it by ckptd keygen)")
    check_private(path)
    return public, secret


def load_authorized_keys(folder: str) -> dict[bytes, str]:
    """Return {public key: name} of every ``*.key`` file in ``folder``.

    Raises AuthError when the folder cannot be listed; a file that is not a key is skipped
    with a warning (it lets nobody in).
    """
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise AuthError(f"cannot read the authorized_keys folder {folder}: {exc.strerror}; "
                        "create it and copy the workers' NAME.key files into it") from None
    keys: dict[bytes, str] = {}
    for name in names:
        if not name.endswith(PUBLIC_SUFFIX) or name.startswith("."):
            continue
        try:
            keys[load_public_key(os.path.join(folder, name))] = name[:-len(PUBLIC_SUFFIX)]
        except AuthError as exc:
            log.warning("skipped %s", exc)
    return keys


# -- clients and workers --------------------------------------------------------------------

@dataclass(frozen=True)
class ClientCurve:
    """A client's CURVE keys: its own pair and the server's public key."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def from_files(cls, server_key: str, client_key: str) -> ClientCurve:
        """Load the server's public key file and this client's secret key file."""
        require_curve()
        public, secret = load_key_pair(client_key)
        return cls(public, secret, load_public_key(server_key))

    def apply_client(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE client of the server (call before connect)."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


def client_curve(settings: Settings) -> ClientCurve | None:
    """The CURVE keys of a worker or client from its settings, or None when not set."""
    server_key, client_key = settings.server_key, settings.client_key
    if not server_key and not client_key:
        return None
    if not (server_key and client_key):
        raise ConfigError("CURVE needs both --server-key (the daemon's NAME.key) and "
                          "--client-key (this machine's NAME.key_secret); "
                          "see docs/guide/security.md")
    return ClientCurve.from_files(server_key, client_key)


# -- the daemon -----------------------------------------------------------------------------

class CurveServer:
    """The daemon's keys and the set of client keys it lets in."""

    def __init__(self, secret_key_file: str, authorized_keys: str) -> None:
        require_curve()
        self.public, self.secret = load_key_pair(secret_key_file)
        self.folder = authorized_keys
        self.allowed = load_authorized_keys(authorized_keys)
        if not self.allowed:
            log.warning("no keys in %s: every worker and client will be refused until "
                        "their NAME.key files are copied there (then send SIGHUP)", self.folder)

    @classmethod
    def from_settings(cls, settings: Settings) -> CurveServer | None:
        """Return the CURVE server of the settings, or None when CURVE is off."""
        secret, folder = settings.curve_secret_key, settings.authorized_keys
        if not secret and not folder:
            return None
        if not (secret and folder):
            raise ConfigError("CURVE needs both curve_secret_key (the daemon's "
                              "NAME.key_secret) and authorized_keys (a folder of the clients' "
                              "NAME.key files); see docs/guide/security.md")
        return cls(secret, folder)

    def apply_server(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE server whose clients are checked by ZAP (before bind)."""
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)

    def reload(self, folder: str | None = None) -> list[str]:
        """Re-read the folder (or a new one); return the names of the keys no longer in it.

        When the folder cannot be read the old keys stay and AuthError is raised.
        """
        folder = folder or self.folder
        fresh = load_authorized_keys(folder)
        removed = sorted(name for key, name in self.allowed.items() if key not in fresh)
        added = sorted(name for key, name in fresh.items() if key not in self.allowed)
        self.folder, self.allowed = folder, fresh
        log.info("authorized keys re-read from %s: %d key(s)", folder, len(fresh),
                 extra={"fields": {"added": ",".join(added) or "-",
                                   "revoked": ",".join(removed) or "-"}})
        return removed

    def decide(self, frames: list[bytes]) -> tuple[list[bytes], str | None]:
        """Answer one ZAP request (after its envelope); return (reply, refused reason)."""
        # version, request id, domain, address, identity, mechanism, credentials...
        if len(frames) < 6 or frames[0] != b"1.0":
            return [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"bad ZAP request",
                    b"", b""], "zap_malformed"
        request_id, address, mechanism = frames[1], frames[3], frames[5]
        if mechanism != b"CURVE" or len(frames) != 7 or len(frames[6]) != 32:
            return [b"1.0", request_id, b"400", b"CURVE required", b"", b""], "auth_mechanism"
        key = z85.encode(frames[6])
        name = self.allowed.get(key)
        if name is None:
            _log_refused(key, address)
            return [b"1.0", request_id, b"400", b"key not authorized", b"", b""], "auth_denied"
        return [b"1.0", request_id, b"200", b"OK", name.encode(), b""], None


_refused_logged: dict[bytes, float] = {}


def _log_refused(key: bytes, address: bytes) -> None:
    """Log a refused key at most once a minute (a refused client retries constantly)."""
    now = time.monotonic()
    if now - _refused_logged.get(key, -1e9) < 60.0:
        return
    if len(_refused_logged) > 1000:
        _refused_logged.clear()
    _refused_logged[key] = now
    log.warning("refused a client whose key is not in authorized_keys",
                extra={"fields": {"key": key.decode(), "address": address.decode("ascii",
                                                                                  "replace")}})


class SocketGuard:
    """What stands between the network and the daemon's loop, for the loop to serve.

    ``start(ctx)`` binds the ZAP handler (before any socket is bound, so no connection is
    ever accepted unchecked); ``secure(sock, name)`` makes a socket a CURVE server when CURVE
    is on and watches its handshakes; ``handle(events)`` answers ZAP requests (a handshake
    waits for the answer: the loop polls the ZAP socket); ``refusals()`` reads the monitors,
    returning the refused attempts as (socket name, reason) for the drop counters (on a
    timer: a count need not be prompt, and every poll of the loop need not ask two more
    sockets).
    """

    def __init__(self, server: CurveServer | None) -> None:
        self.server = server
        self._zap: zmq.Socket[bytes] | None = None
        self._monitors: dict[zmq.Socket[bytes], str] = {}
        self._secured: dict[str, zmq.Socket[bytes]] = {}

    @property
    def curve(self) -> bool:
        """True when the sockets are CURVE servers."""
        return self.server is not None

    def start(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        """Bind the ZAP handler in ``ctx`` (only with CURVE)."""
        if self.server is not None:
            zap = ctx.socket(zmq.ROUTER)
            zap.setsockopt(zmq.LINGER, 0)
            try:
                zap.bind(ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                zap.close(0)
                raise AuthError(f"cannot start the ZAP handler: {exc}") from None
            self._zap = zap

    def secure(self, sock: zmq.Socket[bytes], name: str) -> None:
        """Apply CURVE to ``sock`` (a server socket, before bind) and watch its handshakes."""
        if self.server is not None:
            self.server.apply_server(sock)
        monitor = sock.get_monitor_socket(_HANDSHAKE_EVENTS)
        self._monitors[monitor] = name
        self._secured[name] = sock

    def pollables(self) -> list[zmq.Socket[bytes]]:
        """The sockets the loop must poll for input and pass to :meth:`handle`."""
        return [self._zap] if self._zap is not None else []

    def handle(self, events: Mapping[object, int]) -> None:
        """Serve what arrived on the ZAP socket."""
        zap = self._zap
        if zap is not None and events.get(zap):
            self._serve_zap(zap)

    def refusals(self) -> list[tuple[str, str]]:
        """The handshakes refused since the last call, as (socket name, reason)."""
        refused: list[tuple[str, str]] = []
        for monitor, name in self._monitors.items():
            refused.extend((name, r) for r in _read_monitor(monitor))
        return refused

    def _serve_zap(self, zap: zmq.Socket[bytes]) -> None:
        assert self.server is not None
        for frames in waiting_messages(zap, 1000):
            try:
                split = frames.index(b"")
            except ValueError:
                continue  # not a ZAP request; libzmq never sends one
            reply, _reason = self.server.decide(frames[split + 1:])
            try:
                zap.send_multipart(frames[:split + 1] + reply, zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the handshake gave up waiting: nothing to answer
                log.debug("ZAP reply not sent: %s", exc)

    def reload(self, folder: str | None) -> list[str]:
        """Re-read the authorized keys; cut every connection when one was revoked.

        Returns the names of the revoked keys. Without CURVE it does nothing.
        """
        if self.server is None:
            return []
        try:
            removed = self.server.reload(folder)
        except AuthError as exc:
            log.error("kept the old authorized keys: %s", exc)
            return []
        if removed:
            log.warning("revoked %s: closing every connection; the others reconnect by "
                        "themselves", ", ".join(removed))
            for name, sock in self._secured.items():
                _rebind(sock, name)
        return removed

    def close(self, poller: zmq.Poller | None = None) -> None:
        """Close the ZAP handler and the monitors (before the context ends). Idempotent."""
        for sock in [*self.pollables(), *self._monitors]:
            if poller is not None:
                try:
                    poller.unregister(sock)
                except KeyError:
                    pass
            sock.close(0)
        self._zap = None
        self._monitors.clear()
        self._secured.clear()


def _read_monitor(monitor: zmq.Socket[bytes]) -> list[str]:
    reasons = []
    for frames in waiting_messages(monitor, 1000):
        # Imported at the first event: zmq.utils.monitor imports asyncio (~25 ms), and the
        # monitors are read on a timer whether or not a handshake ever fails.
        from zmq.utils.monitor import parse_monitor_message

        try:
            event = parse_monitor_message(frames)
        except (zmq.ZMQError, ValueError, IndexError, TypeError):
            continue
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            reasons.append("auth_denied")
        elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            reasons.append(_PROTOCOL_REASONS.get(int(event["value"]), "handshake_protocol"))
        elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            reasons.append("handshake")
    return reasons


def _rebind(sock: zmq.Socket[bytes], name: str) -> None:
    """Unbind and bind again: libzmq closes every connection accepted through the endpoint."""
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        sock.unbind(endpoint)
    except zmq.ZMQError as exc:
        log.error("cannot unbind the %s socket from %s: %s", name, endpoint, exc)
        return
    deadline = time.monotonic() + REBIND_TIMEOUT
    while True:  # the unbind completes in libzmq's I/O thread: the port frees within ms
        try:
            sock.bind(endpoint)
            return
        except zmq.ZMQError as exc:
            if time.monotonic() >= deadline:
                raise CkptdError(f"cannot bind the {name} socket to {endpoint} again after "
                                 f"revoking keys: {exc}") from None
            time.sleep(0.001)
