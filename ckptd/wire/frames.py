"""Sending a multipart message with fewer Python calls than pyzmq's ``send_multipart``.

pyzmq's ``Socket.send_multipart`` calls the Python-level ``Socket.send`` once per frame,
combining ``SNDMORE`` with the flags as enum members each time; a control reply (identity,
tag, delimiter, version, kind, body) pays that six times. Measured on the daemon's hot path
(a reply per submit), that was several times the cost of the sends themselves. This calls
the compiled ``send`` of pyzmq's backend directly, with the flags as plain integers: the
same frames go out the same way (copied, as pyzmq copies small frames anyway).

Only for the blocking sockets of ``zmq.Socket``; the asyncio sockets keep their own
``send_multipart``.
"""

from __future__ import annotations

from collections.abc import Sequence

import zmq
import zmq.backend

_send = zmq.backend.Socket.send
_MORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)


def send_frames(sock: zmq.Socket[bytes], frames: Sequence[bytes], flags: int = 0) -> None:
    """Send ``frames`` as one message on ``sock`` (raises what ``send_multipart`` raises:
    ``zmq.Again`` with ``NOBLOCK`` when it cannot be sent now, ...)."""
    more = _MORE | flags
    last = len(frames) - 1
    for position, frame in enumerate(frames):
        _send(sock, frame, more if position < last else flags)
