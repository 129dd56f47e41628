"""Encryption at rest: payloads, results and checkpoints sealed with AES-256-GCM by the client
and the worker, so that neither the store nor the daemon ever holds the plaintext.

A sealed value is a JSON object that ``cat`` shows as it is, naming the key that sealed it::

    {"ckptd.enc": "A256GCM", "kid": "k2", "nonce": "...", "ct": "..."}

(``clear``, when present, holds fields of the payload kept in clear on purpose: see
:data:`Keyring.clear_fields`). The keys come from a file or the environment as lines (or
comma-separated items) ``ID:BASE64`` of 32-byte keys; the first is used to seal, all of them
open: rotating is adding a new key at the top, and removing an old one only once nothing
sealed with it is left. A key with the id ``hmac`` seals nothing: it keys the hash that
``unique = "payload"`` makes ids from (else the last key listed does), so that the daemon
finds equal payloads without seeing them.

The data authenticated with each value is its kind (payload, result, state), its key id and
its clear fields: a sealed result cannot pass for a payload, nor a clear field be altered.
The ``cryptography`` package does the work; it is imported only when keys are set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NotRequired, Protocol, TypedDict, TypeGuard

from ckptd.codec.fastjson import dumps, loads
from ckptd.core.errors import ConfigError, DecryptError

MARK: Final = "ckptd.enc"
ALGORITHM = "A256GCM"
HMAC_ID = "hmac"
KINDS = ("payload", "result", "state")
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

Envelope = TypedDict("Envelope", {
    "ckptd.enc": str, "kid": str, "nonce": str, "ct": str,
    "clear": NotRequired[dict[str, object]],  # fields of the payload kept in clear
})
"""A sealed value, as :meth:`Keyring.seal` makes it (see the module docstring)."""


class Aead(Protocol):
    """What is used of ``cryptography``'s ``AESGCM``."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """The ciphertext and tag of ``data``."""

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """The plaintext of ``data``; InvalidTag when the key or the data is wrong."""


def is_sealed(value: object) -> TypeGuard[dict[str, object]]:
    """True when ``value`` is a sealed value (an envelope)."""
    return isinstance(value, dict) and MARK in value and "ct" in value


def key_id_of(value: object) -> str | None:
    """The id of the key that sealed ``value``, or None when it is not sealed."""
    return str(value.get("kid")) if is_sealed(value) else None


def clear_field(payload: object, name: str) -> object:
    """Field ``name`` of a payload, sealed or not (a sealed one keeps it in ``clear`` when
    the keyring says so), or None. The hook for fields the daemon needs in clear, such as a
    queue's flow-control key."""
    if is_sealed(payload):
        clear = payload.get("clear")
        return clear.get(name) if isinstance(clear, dict) else None
    return payload.get(name) if isinstance(payload, dict) else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError(f"{what} is not base64") from None


@dataclass(frozen=True)
class Keyring:
    """The keys of one process: the first seals, all open (see the module docstring)."""

    keys: Mapping[str, bytes]
    current: str
    hmac_key: bytes
    clear_fields: tuple[str, ...] = ()
    """Fields of a dict payload copied in clear beside the ciphertext (for the daemon)."""
    _aead: dict[str, Aead] = field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self) -> dict[str, object]:  # pickled into child processes: no ciphers
        return {"keys": dict(self.keys), "current": self.current, "hmac_key": self.hmac_key,
                "clear_fields": self.clear_fields, "_aead": {}}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def _cipher(self, kid: str) -> Aead:
        cipher = self._aead.get(kid)
        if cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            cipher = self._aead[kid] = AESGCM(self.keys[kid])
        return cipher

    @staticmethod
    def _aad(kind: str, kid: str, clear: Mapping[str, object] | None) -> bytes:
        return f"ckptd/{kind}/{kid}/".encode() + (dumps(dict(sorted(clear.items())))
                                                   if clear else b"")

    def seal(self, value: object, kind: str) -> Mapping[str, object]:
        """``value`` (any JSON value) sealed with the current key; raises ValueError when it
        is not JSON. A value sealed already is returned as it is."""
        if is_sealed(value):
            return dict(value)
        kid = self.current
        clear = None
        if self.clear_fields and kind == "payload" and isinstance(value, dict):
            clear = {name: value[name] for name in self.clear_fields if name in value} or None
        nonce = os.urandom(12)
        sealed = self._cipher(kid).encrypt(nonce, dumps(value), self._aad(kind, kid, clear))
        envelope: Envelope = {MARK: ALGORITHM, "kid": kid, "nonce": _b64(nonce),
                              "ct": _b64(sealed)}
        if clear:
            envelope["clear"] = clear
        return envelope

    def open(self, value: object, kind: str, where: str = "") -> Any:
        """The plaintext of a sealed ``value`` (a value that is not sealed is returned as it
        is: jobs from before encryption was on still run). Raises DecryptError saying which
        key is missing or wrong; ``where`` names the job in the message."""
        if not is_sealed(value):
            return value
        kid = str(value.get("kid"))
        what = f"the {kind} of {where}" if where else f"a sealed {kind}"
        if kid not in self.keys or kid == HMAC_ID:
            raise DecryptError(
                f"cannot decrypt {what}: it was sealed with key {kid!r}, which is not among "
                f"this process's keys ({', '.join(self.ids()) or 'none'}); add that key to "
                "the key file (encryption_key_file) or CKPTD_ENCRYPTION_KEYS")
        if value.get(MARK) != ALGORITHM:
            raise DecryptError(f"cannot decrypt {what}: unknown algorithm {value.get(MARK)!r}")
        clear = value.get("clear")
        from cryptography.exceptions import InvalidTag

        nonce, sealed = _unb64(value.get("nonce"), "nonce"), _unb64(value.get("ct"), "ct")
        # A pipeline's next stage gets the result of the one before as its payload.
        for as_kind in (kind, "result") if kind == "payload" else (kind,):
            try:
                plain = self._cipher(kid).decrypt(
                    nonce, sealed, self._aad(as_kind, kid, clear
                                             if isinstance(clear, dict) else None))
            except InvalidTag:
                continue
            return loads(plain)
        raise DecryptError(
            f"cannot decrypt {what}: key {kid!r} here is not the key that sealed it (a "
            "different key under the same id?), or the data was altered")

    @classmethod
    def from_file(cls, path: str, clear_fields: Iterable[str] = ()) -> Keyring:
        """The keys of a key file (``ID:BASE64`` lines, the first seals)."""
        found = load_keyring(path, None, clear_fields)
        assert found is not None
        return found

    @classmethod
    def from_env(cls, name: str = "CKPTD_ENCRYPTION_KEYS") -> Keyring:
        """The keys in an environment variable (``ID:BASE64,...``)."""
        return parse_keys(os.environ.get(name, ""), f"${name}")

    def ids(self) -> list[str]:
        """The ids of the keys that seal and open (the hash key left out)."""
        return [k for k in self.keys if k != HMAC_ID]

    def payload_key(self, payload: object) -> str:
        """The dedup key of a payload (``u`` + 32 hex digits, as
        :func:`ckptd.core.dedup.payload_key` makes them) under the keyed hash: equal
        payloads give equal keys, and nobody without the key can tell what they hold."""
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
        return "u" + hmac.new(self.hmac_key, text.encode(), hashlib.sha256).hexdigest()[:32]


def parse_keys(text: str, source: str, clear_fields: Iterable[str] = ()) -> Keyring:
    """A keyring from lines or comma-separated items ``ID:BASE64`` (``#`` starts a comment);
    raises ConfigError saying which item is wrong."""
    keys: dict[str, bytes] = {}
    items = [item.split("#", 1)[0].strip() for line in text.splitlines()
             for item in line.split(",")]
    for item in (i for i in items if i):
        kid, sep, encoded = item.partition(":")
        kid = kid.strip()
        if not sep or not _KEY_ID.match(kid):
            raise ConfigError(f"encryption key {item[:20]!r}... in {source}: expected "
                              "ID:BASE64 (make one with: ckptd encryption-key --id k1)")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"encryption key {kid!r} in {source} is not base64") from None
        if len(key) != 32:
            raise ConfigError(f"encryption key {kid!r} in {source} has {len(key)} bytes; "
                              "AES-256 needs 32 (make one with: ckptd encryption-key)")
        if kid in keys:
            raise ConfigError(f"encryption key id {kid!r} appears twice in {source}")
        keys[kid] = key
    sealing = [k for k in keys if k != HMAC_ID]
    if not sealing:
        raise ConfigError(f"no encryption key in {source}")
    hmac_key = keys.get(HMAC_ID) or hashlib.sha256(b"ckptd dedup\0" + keys[sealing[-1]]).digest()
    return Keyring(keys, sealing[0], hmac_key, tuple(clear_fields))


def new_key_line(kid: str) -> str:
    """A fresh random key as a line of a key file (``ID:BASE64``)."""
    if not _KEY_ID.match(kid):
        raise ConfigError(f"invalid key id {kid!r}: letters, digits, '_', '.' and '-'")
    return f"{kid}:{_b64(os.urandom(32))}"


def load_keyring(key_file: str | None, keys: str | None,
                 clear_fields: Iterable[str] = ()) -> Keyring | None:
    """The keyring of the settings ``encryption_key_file`` (a file of key lines) and
    ``encryption_keys`` (the lines themselves, for the environment); None when neither is
    set. Raises ConfigError when they cannot be read."""
    text, source = None, ""
    if keys:
        text, source = keys, "encryption_keys"
    elif key_file:
        try:
            with open(key_file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read the encryption key file {key_file}: "
                              f"{exc.strerror or exc}") from None
        source = key_file
    if text is None:
        return None
    return parse_keys(text, source, clear_fields)
