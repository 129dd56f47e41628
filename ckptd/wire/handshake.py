"""What a client learns from a failed ZeroMQ handshake: keys that do not fit the daemon.

A request to a daemon whose CURVE setting does not match the client's gets no answer at all:
libzmq drops the connection during the handshake and tries again. Left alone, the client
waits out its whole timeout and says "no answer". A :class:`HandshakeWatch` reads the
socket's monitor instead, so the client can say at once what is wrong:

- no keys at a CURVE daemon, or keys at a daemon without CURVE: the two sides' mechanisms
  differ (libzmq reports ``PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH``);
- a client key that is not in the daemon's ``authorized_keys``: the daemon refused it
  (``HANDSHAKE_FAILED_AUTH``);
- a server key that is not the daemon's: the handshake fails without detail, again and again
  (said after the second time, as one failure may be a connection cut mid-handshake).
"""

from __future__ import annotations

import itertools

import zmq

from ckptd.core.errors import AuthError

_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
           | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_MISMATCH = int(zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
_NO_DETAIL_LIMIT = 2  # handshakes that failed without detail before it is said
_ADDRESSES = itertools.count(1)


class HandshakeWatch:
    """The handshake failures of one client socket, turned into errors that say the fix."""

    def __init__(self, sock: zmq.Socket[bytes], endpoint: str, with_keys: bool) -> None:
        self.endpoint = endpoint
        self.with_keys = with_keys
        # An address of its own: pyzmq's default is named after the socket's descriptor,
        # which the next socket may reuse before the closed one's monitor is gone.
        self.monitor: zmq.Socket[bytes] = sock.get_monitor_socket(
            _EVENTS, f"inproc://ckptd-handshake-{next(_ADDRESSES)}")
        self._no_detail = 0

    def problem(self) -> AuthError | None:
        """Read the events so far; return the error they amount to, or None."""
        while self.monitor.poll(0):
            # Imported at the first event: zmq.utils.monitor imports asyncio (~15 ms).
            from zmq.utils.monitor import recv_monitor_message

            event = recv_monitor_message(self.monitor)
            kind, value = int(event["event"]), int(event["value"])
            if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == _MISMATCH:
                return self._mismatch()
            if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return AuthError(f"the daemon at {self.endpoint} refused this client's key: "
                                 "copy its public key (NAME.key, beside the --client-key "
                                 "file) into the daemon's authorized_keys folder, then "
                                 "'systemctl reload ckptd' (or kill -HUP the daemon)")
            if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self.with_keys:
                self._no_detail += 1
                if self._no_detail >= _NO_DETAIL_LIMIT:
                    return AuthError(f"the CURVE handshake with the daemon at {self.endpoint} "
                                     "fails: --server-key is probably not that daemon's "
                                     "public key (its server.key)")
        return None

    def _mismatch(self) -> AuthError:
        if self.with_keys:
            return AuthError(f"the daemon at {self.endpoint} does not use CURVE keys: leave "
                             "out --server-key and --client-key (and CKPTD_SERVER_KEY, "
                             "CKPTD_CLIENT_KEY)")
        return AuthError(f"the daemon at {self.endpoint} uses CURVE keys and this client has "
                         "none: give --server-key (the daemon's server.key) and --client-key "
                         "(this machine's NAME.key_secret, its NAME.key in the daemon's "
                         "authorized_keys), or CKPTD_SERVER_KEY and CKPTD_CLIENT_KEY")

    def close(self) -> None:
        """Close the monitor. Idempotent."""
        if not self.monitor.closed:
            self.monitor.close(0)
