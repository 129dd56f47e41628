"""Files sent to the daemon in parts, for ``ckptd --connect ... submit-file``.

A producer that cannot reach the store sends its file through the control socket in parts
(each one request, so no message outgrows ``max_message_size``), then asks the daemon to
submit it; the daemon splits and stores it exactly as ``submit-file --root`` would. Parts
are held in memory until then: at most :data:`MAX_BYTES` in all, and an upload left idle
for :data:`IDLE_S` is dropped (the producer gets an error and sends it again).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from ckptd.core.errors import CkptdError
from ckptd.wire.control_requests import Upload

# A part's size before base64 (2.7 MiB after): under the default max_message_size of 16 MiB;
# a daemon configured below about 3 MiB cannot take uploads.
PART_BYTES = 2 * 1024 * 1024
MAX_BYTES = 512 * 1024 * 1024  # in all, unless told otherwise
MAX_CLIENT_BYTES = 128 * 1024 * 1024  # per client, unless told otherwise
IDLE_S = 60.0  # parts come one after another: a minute without one, and the client is gone


class UploadError(CkptdError):
    """An upload part or its submission that the daemon cannot take."""


@dataclass
class _Upload:
    data: bytearray = field(default_factory=bytearray)
    seen: float = 0.0
    last: int = -1  # the offset of the last part taken
    client: bytes = b""  # the connection that began it (a resend after a reconnect may
    # come on another one: the token, 64 random bits, is what names the upload)


class Uploads:
    """The uploads in progress, by the token their producer chose."""

    def __init__(self, max_bytes: int = MAX_BYTES, idle: float = IDLE_S,
                 max_client_bytes: int = MAX_CLIENT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_client_bytes = max_client_bytes
        self.idle = idle
        self._open: dict[str, _Upload] = {}
        self.refused = 0  # parts refused for the bounds

    def held_by(self, client: bytes) -> int:
        """Bytes held in memory by the uploads of ``client``."""
        return sum(len(u.data) for u in self._open.values() if u.client == client)

    @property
    def held(self) -> int:
        """Bytes held in memory by all uploads."""
        return sum(len(u.data) for u in self._open.values())

    def add(self, part: Upload, now: float, client: bytes = b"") -> int:
        """Append one part (its data in base64; its token and offset checked by the
        protocol) sent by ``client``; return the upload's size so far. A part sent again
        (same offset, after a lost answer) is accepted once. Raises UploadError past a
        bound."""
        self.expire(now)
        token, offset = part.upload, part.offset
        try:
            data = base64.b64decode(part.data, validate=True)
        except (binascii.Error, ValueError):
            raise UploadError("an upload part's data is not valid base64") from None
        upload = self._open.get(token)
        if upload is None:
            if offset != 0:
                raise UploadError(f"no upload {token!r} here (the daemon restarted, or it "
                                  f"was idle over {self.idle:g}s): send the file again")
            upload = self._open[token] = _Upload(client=client)
        upload.seen = now
        size = len(upload.data)
        if offset == upload.last and offset + len(data) == size:
            return size  # the last part again: its answer was lost
        if offset != size:
            raise UploadError(f"upload {token!r} has {size} bytes; a part at offset {offset} "
                              "does not follow them")
        if self.held_by(upload.client) + len(data) > self.max_client_bytes:
            self.refused += 1
            raise UploadError(f"this client holds {self.held_by(upload.client)} bytes of uploads "
                              f"already (limit upload_limit_client = {self.max_client_bytes})"
                              "; send a smaller file, or submit it with --root")
        if self.held + len(data) > self.max_bytes:
            self.refused += 1
            raise UploadError(f"the daemon holds {self.held} bytes of uploads already "
                              f"(limit upload_limit_total = {self.max_bytes}); wait, or "
                              "submit with --root")
        upload.data += data
        upload.last = offset
        return len(upload.data)

    def take(self, token: str, size: int, now: float) -> bytes:
        """Return a whole upload's bytes (checking its ``size``) and forget it."""
        self.expire(now)
        upload = self._open.get(token)
        if upload is None:
            raise UploadError(f"no upload {token!r} here (the daemon restarted, or it was "
                              f"idle over {self.idle:g}s): send the file again")
        if size != len(upload.data):
            raise UploadError(f"upload {token!r} has {len(upload.data)} bytes, not "
                              f"{size}: send the file again")
        del self._open[token]
        return bytes(upload.data)

    def expire(self, now: float) -> None:
        """Drop uploads idle for longer than :attr:`idle`."""
        for token in [t for t, u in self._open.items() if now - u.seen > self.idle]:
            del self._open[token]


def encode_part(data: bytes) -> str:
    """The text of one part, as :meth:`Uploads.add` reads it."""
    return base64.b64encode(data).decode("ascii")
