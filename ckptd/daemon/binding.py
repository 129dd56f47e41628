"""The daemon's sockets: bound with the options every one needs, and said where they are.

A socket is bound with its message limit, its high-water marks and (with CURVE) the guard's
security; a refused bind names the address: InUse when another process listens there,
else ConfigError. Once serving, the bound
endpoints can be written to a ready file (``serve --ready-file``) for whoever waits for them.
"""

from __future__ import annotations

import errno
import json
import os

import zmq

from ckptd.core.errors import ConfigError, InUse
from ckptd.wire.security import SocketGuard


def bind_socket(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, endpoint: str, name: str, *,
                max_message_size: int, guard: SocketGuard | None) -> zmq.Socket[bytes]:
    """A socket of ``kind`` bound to ``endpoint``; raise ConfigError when it cannot be."""
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 1000 if name == "control" else 0)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_size)
    sock.setsockopt(zmq.SNDHWM, 100_000)  # credits bound what is queued; never block
    sock.setsockopt(zmq.RCVHWM, 100_000)
    if guard is not None:
        guard.secure(sock, name)  # CURVE server, handshake monitor
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        if exc.errno == errno.EADDRINUSE:
            raise InUse(f"cannot bind the {name} socket to {endpoint}: the address is in use "
                        "(another ckptd, or another program, listens there); stop it, or give "
                        f"another port (--{name})") from None
        raise ConfigError(f"cannot bind the {name} socket to {endpoint}: {exc}; check the "
                          "address (an address of this machine, e.g. tcp://127.0.0.1:5550)"
                          ) from None
    return sock


def write_ready_file(path: str, info: dict[str, object]) -> None:
    """Write ``info`` as JSON to ``path`` at once (a reader never sees half of it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(info, handle)
    os.replace(tmp, path)
