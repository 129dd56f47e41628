"""The dispatch socket's input: workers' messages read, checked and handed to the engine.

A bad message costs itself (a counted drop), never the loop: a frame that does not decode,
a message for a queue this daemon does not lead, one the engine refuses, or a bug in a
handler. A control request sent here by mistake is answered with where the control port is.
"""

from __future__ import annotations

import logging

import zmq

from ckptd.core.errors import CkptdError, ProtocolError
from ckptd.daemon.cluster.leadership import Leading
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.requests import Control
from ckptd.daemon.telemetry.drops import Drops
from ckptd.wire import protocol
from ckptd.wire.frames import waiting_messages

log = logging.getLogger(__name__)

MAX_WORKER_MESSAGES_PER_STEP = 5000


class DispatchInput:
    """Reads what workers sent on the dispatch socket, a turn's worth at a time."""

    def __init__(self, engine: Engine, leading: Leading, control: Control,
                 drops: Drops) -> None:
        self.engine = engine
        self.leading = leading
        self.control = control
        self.drops = drops

    def read(self, sock: zmq.Socket[bytes], limit: int, now: float) -> int:
        """Handle the messages that arrived (at most a step's worth, each of at most
        ``limit`` bytes); return how many."""
        count = 0
        schemas = protocol.WORKER_MESSAGES
        for frames in waiting_messages(sock, MAX_WORKER_MESSAGES_PER_STEP):
            count += 1
            identity = frames[0]
            try:
                messages = protocol.decode_many(frames[1:], schemas, limit)
            except ProtocolError as exc:
                self.drops.count("dispatch", exc.reason, now)
                if protocol.looks_like_request(frames[1:]):
                    # a control request sent to the dispatch port
                    self._wrong_port(sock, identity, protocol.request_tag(frames[1:]))
                continue
            for kind, body in messages:
                if self.leading.refuses(body):  # sent where its queue is not led:
                    self.drops.count("dispatch", "not_leader", now)  # unconfirmed, resent
                    continue
                try:
                    if not self.engine.worker_message(identity, body, now):
                        self.drops.count("dispatch", "unknown_worker", now)
                except CkptdError as exc:
                    log.debug("refused a %s message: %s", kind.decode(), exc)
                    self.drops.count("dispatch", "refused", now)
                except Exception:  # a bug must cost one message, never the daemon
                    self.drops.internal_error("dispatch", "internal_error", now)
        return count

    def _wrong_port(self, sock: zmq.Socket[bytes], identity: bytes, tag: bytes) -> None:
        """Tell a client that connected to the dispatch port where the control port is."""
        try:
            sock.send_multipart([identity, *self.control.wrong_port(tag)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
