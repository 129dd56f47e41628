"""The console's GET routes: every page, ``/metrics``, ``/healthz`` and the script.

Pages never change anything. They render the latest snapshot, or read the store from the
I/O pool (a job's file, a listing, a search), or ask the daemon's loop for one lease.
"""

from __future__ import annotations

import time

from aiohttp import web

from ckptd.core.errors import CkptdError, JobNotFound
from ckptd.core.explain import explain
from ckptd.core.job_filter import make_filter
from ckptd.core.names import is_valid_name
from ckptd.core.states import State, parse_state
from ckptd.daemon.telemetry import exposition
from ckptd.daemon.telemetry.console_host import ConsoleHost, keep_cookie, viewer_of
from ckptd.daemon.telemetry.console_js import SCRIPT
from ckptd.daemon.telemetry.dashboard import render_index, render_queue
from ckptd.daemon.telemetry.job_search import find
from ckptd.daemon.telemetry.pages_jobs import render_job, render_jobs, render_running, render_search
from ckptd.daemon.telemetry.pages_misc import (
    render_audit,
    render_login,
    render_message,
    render_workers,
)
from ckptd.store.audit import audit_folder, read_actions
from ckptd.wire.protocol import Body

HTML = "text/html"


def html(status: int, text: str) -> web.Response:
    """An HTML answer."""
    return web.Response(status=status, text=text, content_type=HTML, charset="utf-8")


def add_pages(app: web.Application, host: ConsoleHost) -> None:
    """Register the GET routes on ``app``."""

    async def index(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        flash = host.sessions.take_flash(who.binding) if who.binding else None
        return keep_cookie(html(200, render_index(host.snapshot, viewer,
                                                  flash[0] if flash else None)), who)

    async def queue(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        name = request.match_info["queue"]
        snap = host.snapshot
        if snap is None or not any(q.name == name for q in snap.queues):
            return html(404, render_message("Not found", f"no queue {name!r}", viewer))
        flash = host.sessions.take_flash(who.binding) if who.binding else None
        return keep_cookie(html(200, render_queue(snap, name, viewer,
                                                  flash[0] if flash else None,
                                                  bool(flash and flash[1]))), who)

    async def running(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        return keep_cookie(html(200, render_running(host.snapshot, viewer)), who)

    async def workers(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        return keep_cookie(html(200, render_workers(host.snapshot, viewer)), who)

    async def jobs(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        name, state_text = request.match_info["queue"], request.match_info["state"]
        try:
            state = parse_state(state_text)
            offset = max(0, int(request.query.get("offset", "0")))
        except (CkptdError, ValueError) as exc:
            return html(400, render_message("Bad request", str(exc), viewer))
        if not is_valid_name(name):
            return html(400, render_message("Bad request", "not a valid queue name", viewer))
        found = await host.blocking(lambda: find(host.listings, name, state,
                                                 make_filter(now=time.time()), offset=offset))
        return keep_cookie(html(200, render_jobs(name, state.value, found, offset, viewer)),
                           who)

    async def search(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        form = {k: request.query.get(k, "") for k in
                ("queue", "state", "where", "error", "since", "until", "after")}
        form["state"] = form["state"] or State.FAILED.value
        queues = [q.name for q in host.snapshot.queues] if host.snapshot else []
        if not form["queue"]:
            return keep_cookie(html(200, render_search(form, queues, None, viewer)), who)
        try:
            flt = make_filter([w for w in form["where"].split(",") if w.strip()],
                              form["error"], form["since"], form["until"], now=time.time())
            state = parse_state(form["state"])
            if not is_valid_name(form["queue"]):
                raise CkptdError(f"not a queue name: {form['queue']!r}")
        except CkptdError as exc:
            return html(400, render_search(form, queues, None, viewer, str(exc)))
        offset = max(0, int(request.query.get("offset", "0") or 0))
        after = form.pop("after") or None
        found = await host.blocking(lambda: find(host.listings, form["queue"], state, flt,
                                                 offset=offset, after=after))
        return keep_cookie(html(200, render_search(form, queues, found, viewer)), who)

    async def job(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        name, job_id = request.match_info["queue"], request.match_info["id"]
        if not (is_valid_name(name) and is_valid_name(job_id)):
            return html(400, render_message("Bad request", "not a valid queue name or id",
                                            viewer))
        try:
            info: Body = dict(await host.blocking(lambda: host.admin.show(name, job_id)))
        except JobNotFound:
            return html(404, render_message("Not found", f"no job {job_id!r} in queue "
                                                         f"{name!r}", viewer))
        except CkptdError as exc:
            return html(503, render_message("Store error", str(exc), viewer))
        problem = None
        try:
            info["lease"] = await host.lease(name, job_id)
        except (TimeoutError, RuntimeError):
            problem = "The daemon's loop did not answer in time: lease details are missing."
        flash = host.sessions.take_flash(who.binding) if who.binding else None
        return keep_cookie(html(200, render_job(
            name, job_id, info, explain(info, time.time()), viewer, problem,
            flash[0] if flash else None, bool(flash and flash[1]))), who)

    async def audit(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        if who.user is None:
            return html(401, render_message("Log in", "the audit log is shown to users "
                                                      "who log in", viewer))
        records = await host.blocking(lambda: read_actions(host.store))
        return html(200, render_audit(records, audit_folder(host.store), viewer))

    async def login(request: web.Request) -> web.StreamResponse:
        who, viewer = await viewer_of(host, request)
        return keep_cookie(html(200, render_login(viewer, users=host.users.configured)), who)

    async def metrics(request: web.Request) -> web.StreamResponse:
        registry = request.app["registry"]
        body = await host.blocking(lambda: exposition.render(registry))
        return web.Response(body=body, headers={"Content-Type": exposition.CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def script(request: web.Request) -> web.StreamResponse:
        return web.Response(text=SCRIPT, content_type="text/javascript")

    async def not_found(request: web.Request) -> web.StreamResponse:
        _, viewer = await viewer_of(host, request)
        return html(404, render_message("Not found", "no such page", viewer))

    routes = [("/", index), ("/index.html", index), ("/queue/{queue}", queue),
              ("/running", running), ("/workers", workers), ("/jobs/{queue}/{state}", jobs),
              ("/search", search), ("/job/{queue}/{id}", job), ("/audit", audit),
              ("/login", login), ("/metrics", metrics), ("/healthz", healthz),
              ("/static/console.js", script), ("/{tail:.*}", not_found)]
    for path, handler in routes:
        app.router.add_get(path, handler)
