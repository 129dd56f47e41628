"""ZeroMQ endpoints: which addresses are loopback, and what a bind is allowed to expose.

Sockets bind to 127.0.0.1 unless configured otherwise. Binding any other address without
CURVE is refused (with the commands that set up keys) unless the operator says ``insecure``,
which is then logged as a warning at every start.
"""

from __future__ import annotations

import ipaddress
import logging

from ckptd.core.config import Settings
from ckptd.core.errors import ConfigError

log = logging.getLogger(__name__)

KEYS_HELP = ("set up CURVE keys (ckptd keygen /etc/ckptd/keys --name server; "
             "curve_secret_key and authorized_keys in the config; see docs/guide/security.md) "
             "or pass --insecure to accept an unauthenticated network socket")


def host_of(endpoint: str) -> str | None:
    """Return the host of a ``tcp://host:port`` endpoint, or None for ipc:// and inproc://."""
    if not endpoint.startswith("tcp://"):
        return None
    address = endpoint[len("tcp://"):]
    if ";" in address:  # tcp://source;destination: the part after ';' is the peer
        address = address.split(";", 1)[1]
    host, _, _ = address.rpartition(":")
    return host.strip("[]")


def port_of(endpoint: str) -> int:
    """Return the port of a ``tcp://host:port`` endpoint; raise ConfigError otherwise."""
    try:
        return int(endpoint.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        raise ConfigError(f"endpoint {endpoint!r} has no port; expected tcp://HOST:PORT") from None


def connect_endpoints(addresses: str | list[str]) -> list[str]:
    """The daemon addresses a client or worker is given, as ZeroMQ endpoints.

    ``addresses`` is one address, several separated by commas, or a list. ``tcp://`` is
    implied when no scheme is given (``127.0.0.1:5550``). Raises ConfigError, saying what is
    expected, for an empty list or a TCP address without a port.
    """
    given = [addresses] if isinstance(addresses, str) else list(addresses)
    items = [item for text in given for item in text.split(",")]
    found = []
    for item in items:
        address = item.strip()
        if not address:
            continue
        if "://" not in address:
            address = "tcp://" + address
        if address.startswith("tcp://"):
            host, _, port = address[len("tcp://"):].rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"invalid daemon address {item.strip()!r}: expected "
                                  "HOST:PORT or tcp://HOST:PORT, e.g. tcp://127.0.0.1:5550")
        found.append(address)
    if not found:
        raise ConfigError("no daemon address given: expected HOST:PORT or tcp://HOST:PORT, "
                          "e.g. tcp://127.0.0.1:5550")
    return found


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(endpoint: str, settings: Settings) -> None:
    """Refuse a non-loopback bind without CURVE unless ``settings.insecure`` is set.

    CURVE means both ``curve_secret_key`` and ``authorized_keys`` (ironhouse); ipc:// and
    inproc:// never leave the host. Raises ConfigError saying how to set up keys.
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return
    host = host_of(endpoint)  # None for other transports (ws://, pgm://, ...): not loopback
    if host is not None and is_loopback(host):
        return
    if settings.curve_secret_key and settings.authorized_keys:
        return  # a CURVE server that lets in only the authorized keys
    if settings.insecure:
        log.warning("INSECURE: %s is bound without CURVE; anyone who can reach it can take "
                    "jobs and submit work", endpoint)
        return
    raise ConfigError(f"refusing to bind {endpoint} without CURVE: {KEYS_HELP}")


def peer_endpoint(control: str, port: int) -> str:
    """The endpoint of another port on the daemon's host, as seen by a client of ``control``."""
    host = host_of(control)
    if host is None:
        raise ConfigError(f"cannot derive a TCP endpoint from {control!r}")
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def advertised(bound_control: str, bound_dispatch: str, advertise: str, host: str
               ) -> tuple[str, str]:
    """The control and dispatch addresses other daemons, workers and clients reach a daemon
    at: ``advertise`` (its dispatch on the same host) when given, else the bound ones with
    ``host`` for a socket bound to every interface (``*``, ``0.0.0.0``, ``::``)."""
    if advertise:
        control = connect_endpoints(advertise)[0]
    else:
        bound = host_of(bound_control)
        control = bound_control
        if bound in ("*", "0.0.0.0", "::", ""):
            control = peer_endpoint(f"tcp://{host}:0", port_of(bound_control))
    if host_of(control) is None or not bound_dispatch.startswith("tcp://"):
        return control, bound_dispatch  # ipc://, inproc://: reached as bound
    return control, peer_endpoint(control, port_of(bound_dispatch))
