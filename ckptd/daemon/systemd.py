"""The systemd notify protocol: one datagram to ``$NOTIFY_SOCKET`` per message.

``READY=1`` once the daemon serves, ``STATUS=...`` for ``systemctl status``, ``WATCHDOG=1``
at half of ``$WATCHDOG_USEC``, ``RELOADING=1`` / ``STOPPING=1`` around reloads and stops.
Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages when running under systemd with Type=notify."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]  # abstract namespace
        elif address.startswith("/"):
            self.address = address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1_000_000 / 2
        self._last_ping = 0.0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return self.address is not None

    def notify(self, text: str) -> bool:
        """Send one message (``KEY=value`` lines); return True when it was sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(text.encode(), self.address)
            return True
        except OSError as exc:
            log.warning("cannot notify systemd: %s", exc)
            return False

    def ready(self, status: str) -> None:
        """Tell systemd the service is up."""
        self.notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        """Update the one-line status shown by ``systemctl status``."""
        self.notify(f"STATUS={status}")

    def reloading(self) -> None:
        """Tell systemd a reload began (it ends with :meth:`ready`)."""
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self, status: str) -> None:
        """Tell systemd the service is shutting down."""
        self.notify(f"STOPPING=1\nSTATUS={status}")

    def watchdog(self, now: float) -> None:
        """Ping the watchdog if half its interval has passed since the last ping."""
        if self.watchdog_interval is not None and now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket. Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def credential_copy(path: str | None, environ: dict[str, str] | None = None) -> bool:
    """Whether the settings file ``path`` is a systemd credential (``LoadCredential=``):
    a copy made when the service started, which a reload reads again unchanged."""
    folder = (os.environ if environ is None else environ).get("CREDENTIALS_DIRECTORY")
    if not path or not folder:
        return False
    return os.path.dirname(os.path.abspath(path)) == os.path.abspath(folder)
