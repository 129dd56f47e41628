"""Who may act in the console: users and tokens from a file, sessions, roles, CSRF tokens.

The users file (setting ``console_users``, written by ``ckptd console-user``) has one line
per user: ``NAME ROLE HASH``, where ROLE is ``operator`` (may act) or ``read-only`` (may
log in and look), and HASH is ``scrypt$N$r$p$SALT$KEY`` of the password (hashlib's scrypt:
memory-hard, no dependency). A token is a password made by ``console-user --token`` for
scripts, sent as ``Authorization: Bearer NAME:TOKEN``. The file is read again when it
changes, so adding or removing a user needs no restart.

A login in the browser makes a session (a random id in an HttpOnly, SameSite=Strict
cookie, kept in memory: a restart logs everyone out). Every form carries a CSRF token that
is an HMAC of the session (or, before login, of a random cookie) under a key made at start,
so a page of another site cannot post a form that passes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
from dataclasses import dataclass

from ckptd.core.errors import ConfigError

log = logging.getLogger(__name__)

OPERATOR = "operator"
READ_ONLY = "read-only"
ROLES = (OPERATOR, READ_ONLY)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1  # 16 MiB and ~50 ms per check
SESSION_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000


def hash_secret(secret: str) -> str:
    """The HASH column of a users file for ``secret``."""
    salt = os.urandom(16)
    key = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     _b64(salt), _b64(key)])


def check_secret(secret: str, encoded: str) -> bool:
    """True when ``secret`` is the one ``encoded`` was made from (constant time)."""
    try:
        kind, n, r, p, salt, key = encoded.split("$")
        if kind != "scrypt":
            return False
        wanted = base64.urlsafe_b64decode(key + "==")
        got = hashlib.scrypt(secret.encode(), salt=base64.urlsafe_b64decode(salt + "=="),
                             n=int(n), r=int(r), p=int(p), dklen=len(wanted),
                             maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, wanted)


@dataclass(frozen=True)
class User:
    """A user of the console and what it may do."""

    name: str
    role: str

    @property
    def may_act(self) -> bool:
        """True for an operator."""
        return self.role == OPERATOR


class Users:
    """The users file, read again whenever it changes."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._seen: tuple[float, int] | None = None
        self._hashes: dict[str, tuple[str, str]] = {}  # name -> (role, hash)
        self._lock = threading.Lock()

    def _load(self) -> None:
        if not self.path:
            self._hashes = {}
            return
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._hashes, self._seen = {}, None
            return
        if self._seen == (stat.st_mtime, stat.st_size):
            return
        self._hashes = parse_users(_read(self.path), self.path)
        self._seen = (stat.st_mtime, stat.st_size)

    def check(self, name: str, secret: str) -> User | None:
        """The user ``name`` when ``secret`` is its password or token, else None."""
        with self._lock:
            try:
                self._load()
            except ConfigError as exc:
                log.error("%s", exc)
                return None
            found = self._hashes.get(name)
        if found is None:
            check_secret(secret, _dummy_hash())  # as slow as a real check: no timing tells names
            return None
        role, encoded = found
        return User(name, role) if check_secret(secret, encoded) else None

    @property
    def configured(self) -> bool:
        """True when a users file is set."""
        return bool(self.path)


def parse_users(text: str, where: str) -> dict[str, tuple[str, str]]:
    """``{name: (role, hash)}`` of a users file; ConfigError naming a bad line."""
    found: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ROLES or not parts[2].startswith("scrypt$"):
            raise ConfigError(f"{where}:{number}: expected NAME ROLE HASH with ROLE operator "
                              "or read-only (write it with ckptd console-user)")
        found[parts[0]] = (parts[1], parts[2])
    return found


def set_user(path: str, name: str, role: str, secret: str | None) -> None:
    """Add or replace ``name`` in the users file at ``path`` (made 0600 when new); with
    ``secret`` None, remove it. The file is replaced atomically."""
    if role not in ROLES:
        raise ConfigError(f"invalid role {role!r}: expected operator or read-only")
    if not name or any(c.isspace() or c == ":" for c in name):
        raise ConfigError(f"invalid user name {name!r}: no spaces or ':'")
    try:
        text = _read(path)
    except FileNotFoundError:
        text = ""
    users = parse_users(text, path)
    lines = [f"{n} {r} {h}" for n, (r, h) in users.items() if n != name]
    if secret is not None:
        lines.append(f"{name} {role} {hash_secret(secret)}")
    temporary = f"{path}.tmp-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# ckptd console users: NAME ROLE HASH (ckptd console-user)\n")
        handle.write("".join(line + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@dataclass
class Session:
    """A logged-in browser."""

    user: User
    expires: float


class Sessions:
    """The sessions of logged-in browsers, in memory, and the CSRF tokens of forms."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._sessions: dict[str, Session] = {}
        self._flashes: dict[str, tuple[str, bool]] = {}
        self._lock = threading.Lock()

    def start(self, user: User, now: float) -> str:
        """A new session for ``user``; return its id (the cookie's value)."""
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
                while len(self._sessions) >= MAX_SESSIONS:
                    self._sessions.pop(next(iter(self._sessions)))
            token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
            self._sessions[token] = Session(user, now + SESSION_SECONDS)
            return token

    def get(self, token: str | None, now: float) -> User | None:
        """The user of session ``token``, or None (none, or expired)."""
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.expires <= now:
                self._sessions.pop(token, None)
                return None
            return session.user

    def end(self, token: str | None) -> None:
        """Log out."""
        if token:
            with self._lock:
                self._sessions.pop(token, None)

    def flash(self, binding: str, text: str, error: bool = False) -> None:
        """Keep a message for the next page ``binding`` sees (what an action did)."""
        with self._lock:
            if len(self._flashes) > MAX_SESSIONS:
                self._flashes.clear()
            self._flashes[binding] = (text, error)

    def take_flash(self, binding: str) -> tuple[str, bool] | None:
        """The message kept for ``binding``, once."""
        with self._lock:
            return self._flashes.pop(binding, None)

    def csrf(self, binding: str) -> str:
        """The CSRF token of forms shown to the holder of cookie value ``binding``."""
        mac = hmac.new(self._key, binding.encode(), hashlib.sha256).digest()
        return _b64(mac[:18])

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        """True when ``token`` is the CSRF token of ``binding`` (constant time)."""
        if not binding or not token:
            return False
        return hmac.compare_digest(self.csrf(binding), token)


def new_cookie_value() -> str:
    """A random cookie value (a visitor's, before it logs in)."""
    return base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


_dummy: list[str] = []


def _dummy_hash() -> str:
    if not _dummy:
        _dummy.append(hash_secret(os.urandom(8).hex()))
    return _dummy[0]
