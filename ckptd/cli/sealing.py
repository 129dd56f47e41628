"""What the commands do about hooks and sealed data: the client's hooks, trace and keys from
the settings, and ``show --decrypt`` (docs/guide/encryption.md)."""

from __future__ import annotations

from typing import TypedDict

from ckptd.client.hooks import HookSpec
from ckptd.client.preparing import Preparer
from ckptd.codec.crypto import Keyring, is_sealed, key_id_of, load_keyring
from ckptd.core.answer_types import ShowAnswer
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError


def keyring(settings: Settings) -> Keyring | None:
    """The keys the settings name (None: none)."""
    return load_keyring(settings.encryption_key_file, settings.encryption_keys,
                        settings.encryption_clear_fields)


def preparer(settings: Settings) -> Preparer:
    """A producer's hooks, trace and keys, from the settings."""
    return Preparer(settings.hooks, keyring(settings), settings.tracing,
                    settings.tracing_baggage)


class ClientOptions(TypedDict):
    """The keyword arguments of :class:`ckptd.Client` that come from the settings."""

    hooks: list[HookSpec]
    keys: Keyring | None
    tracing: str
    tracing_baggage: bool


def client_options(settings: Settings) -> ClientOptions:
    """The keyword arguments of :class:`ckptd.Client` that the settings give."""
    return {"hooks": list(settings.hooks), "keys": keyring(settings),
            "tracing": settings.tracing, "tracing_baggage": settings.tracing_baggage}


def opened(info: ShowAnswer, keys: Keyring | None) -> list[str]:
    """Open the sealed payload, result and checkpoint of a ``show`` answer in place (those
    ``keys`` can open); return a line for each sealed value saying what was done."""
    job = _dict(info.get("job"))
    where = f"{job.get('queue')}/{job.get('id')}"
    checkpoint = _dict(info.get("checkpoint"))
    places: list[tuple[dict[str, object], str, str]] = [
        (job, "payload", "payload"), (job, "result", "result"), (checkpoint, "state", "state")]
    notes = []
    for holder, name, kind in places:
        value = holder.get(name)
        if not is_sealed(value):
            continue
        kid = key_id_of(value)
        if keys is None:
            notes.append(f"{name}: sealed with key {kid!r}; no keys here to open it "
                         "(set encryption_key_file or CKPTD_ENCRYPTION_KEYS)")
            continue
        try:
            holder[name] = keys.open(value, kind, where)
            notes.append(f"{name}: sealed with key {kid!r}, opened here")
        except CkptdError as exc:
            notes.append(f"{name}: {exc}")
    return notes


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}
