"""The console as an aiohttp application: the guard first
(:mod:`ckptd.daemon.telemetry.web_guard`), then the
actions (POST) and the pages (GET)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from ckptd.daemon.telemetry.console_actions import add_actions
from ckptd.daemon.telemetry.console_host import ConsoleHost
from ckptd.daemon.telemetry.console_pages import add_pages
from ckptd.daemon.telemetry.web_guard import make_guard
from ckptd.daemon.telemetry.web_server import Limits


class HostWithRegistry(ConsoleHost, Protocol):
    """A console host that also has the Prometheus registry and its host names."""

    registry: CollectorRegistry

    def hosts(self) -> frozenset[str]:
        """The host names the console answers to now."""
        ...


def build_app(host: HostWithRegistry, limits: Limits,
              count: Callable[[str, str], None]) -> web.Application:
    """The application that serves ``/metrics`` and the console of ``host``."""
    app = web.Application(middlewares=[make_guard(host.hosts, limits, count)],
                          client_max_size=limits.body)
    app["registry"] = host.registry
    add_actions(app, host)  # before the pages: their catch-all route is the last
    add_pages(app, host)
    return app
