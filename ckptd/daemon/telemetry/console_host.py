"""What the console's pages and actions ask of the daemon's HTTP side (a ``Protocol``, so
that they do not import the server that serves them), and the login they share.

:class:`ckptd.daemon.telemetry.http_server.Telemetry` is the one implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from aiohttp import web

from ckptd.core.answer_types import LeaseInfo
from ckptd.core.config import Settings
from ckptd.daemon.telemetry.console_auth import Sessions, User, Users, new_cookie_value
from ckptd.daemon.telemetry.job_search import Listings
from ckptd.daemon.telemetry.page_parts import Viewer
from ckptd.daemon.telemetry.snapshot import Snapshot
from ckptd.store.admin import StoreAdmin
from ckptd.store.base import Store
from ckptd.wire.protocol import Body

T = TypeVar("T")

SESSION_COOKIE = "ckptd_session"
VISITOR_COOKIE = "ckptd_visitor"


class ConsoleHost(Protocol):
    """The daemon's side of the console."""

    snapshot: Snapshot | None
    store: Store
    admin: StoreAdmin  # the store commands, for reads (show) from the I/O pool
    listings: Listings
    users: Users
    sessions: Sessions

    @property
    def settings(self) -> Settings:
        """The settings in force."""

    async def ask(self, kind: str, body: Body) -> Body:
        """Send a control request through the daemon's loop (the CLI's and the client's
        code path); return the answer or raise the error."""

    async def in_loop(self, func: Callable[[], T]) -> T:
        """Run ``func`` in the daemon's loop and return its result."""

    async def blocking(self, func: Callable[[], T]) -> T:
        """Run ``func`` (store reads, listings, password checks) in the I/O pool."""

    async def lease(self, queue: str, job_id: str) -> LeaseInfo | None:
        """What the daemon knows of a claimed job's lease (None when it is not claimed)."""


@dataclass(frozen=True)
class Visitor:
    """Who sent a request: the login (if any), the cookie its forms are bound to, and
    whether it came with a bearer token (a script: no CSRF token needed)."""

    user: User | None
    binding: str
    bearer: bool = False
    new_cookie: str | None = None  # a visitor cookie to set on the answer


async def visitor(host: ConsoleHost, request: web.Request) -> Visitor:
    """Who sent ``request`` (a session cookie, a bearer token, or nobody yet)."""
    now = time.time()
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and ":" in auth:
        name, _, secret = auth[7:].strip().partition(":")
        user = await host.blocking(lambda: host.users.check(name, secret))
        return Visitor(user, "", bearer=True)
    session = request.cookies.get(SESSION_COOKIE)
    user = host.sessions.get(session, now)
    if user is not None and session is not None:
        return Visitor(user, session)
    cookie = request.cookies.get(VISITOR_COOKIE)
    if cookie and len(cookie) <= 64:
        return Visitor(None, cookie)
    fresh = new_cookie_value()
    return Visitor(None, fresh, new_cookie=fresh)


def keep_cookie(response: web.StreamResponse, who: Visitor) -> web.StreamResponse:
    """Set the visitor cookie on ``response`` when ``who`` got a new one."""
    if who.new_cookie:
        response.set_cookie(VISITOR_COOKIE, who.new_cookie, httponly=True, samesite="Strict",
                            path="/")
    return response


async def viewer_of(host: ConsoleHost, request: web.Request) -> tuple[Visitor, Viewer]:
    """Who sent ``request``, and what the pages show them."""
    who = await visitor(host, request)
    on = host.settings.console_actions
    return who, Viewer(csrf=host.sessions.csrf(who.binding) if who.binding else "",
                       user=who.user.name if who.user else None,
                       role=who.user.role if who.user else None,
                       may_act=bool(on and who.user and who.user.may_act), actions_on=on)
