"""Finding a daemon to work for, among the addresses a worker was given.

A worker given ``--connect tcp://a:5550,tcp://b:5550`` asks each address in turn, again and
again until one answers, where to connect for jobs (:func:`find_daemon`). Which daemon then
leads each of its queues, and how the worker follows a queue to another daemon (a standby
that took over, another daemon of the store), is :mod:`ckptd.worker.routes`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from ckptd.core.errors import AuthError, DaemonUnavailable, Standby
from ckptd.wire.endpoints import peer_endpoint
from ckptd.wire.security import ClientCurve

log = logging.getLogger(__name__)


def find_daemon(ctx: zmq.Context[zmq.Socket[bytes]], endpoints: list[str], curve: ClientCurve | None
                ) -> tuple[list[str], dict[str, Any], str]:
    """Ask the control addresses in turn, again and again until one answers, where to
    connect for jobs; return the addresses (the one that answered first), its answer, and
    its dispatch endpoint.

    Silence (no daemon yet, a restart), a standby's answer and a refused key (the daemon's
    operator may authorize it and reload) are waited out, saying why; an answer that says
    the address is wrong (a dispatch port) is raised, as the CLI would, since asking again
    cannot change it.
    """
    from ckptd.client.client import Client

    delay = 0.2
    while True:
        client = Client(endpoints, timeout=5.0, context=ctx, curve=curve)
        try:
            answer = client.request("endpoints")
            first = client.endpoints.index(client.endpoint)
            ordered = client.endpoints[first:] + client.endpoints[:first]
            return ordered, answer, peer_endpoint(client.endpoint, int(answer["dispatch_port"]))
        except (DaemonUnavailable, Standby, AuthError) as exc:
            log.warning("%s; retrying in %.1fs", exc, delay)
        finally:
            client.close()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
