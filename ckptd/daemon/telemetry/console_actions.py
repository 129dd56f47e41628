"""The console's POST routes: logging in and out, actions on one job or queue, and bulk
actions on "all matching" a filter (count, confirm, then act).

Every action passes the same gate, in this order: actions are turned on
(``console_actions``), the form's CSRF token is right (a bearer token needs none), someone
is logged in, as an operator. It is then carried out as the control request the CLI and the
client send (:meth:`ConsoleHost.ask`: ``retry``, ``cancel``, ``move``, ``purge``, ``pause``,
``resume``, ``limit``, ``run_schedule``), or for a replay by :func:`ckptd.store.replay.replay`
as ``ckptd replay`` runs it, and recorded in the audit log (who, what, when, from where,
the result). Refusals of a logged-in user are recorded too.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from ckptd.core.errors import CkptdError, ConfigError
from ckptd.core.job_filter import JobFilter, make_filter
from ckptd.core.queue_controls import parse_rate
from ckptd.core.states import State, parse_state
from ckptd.daemon.telemetry.console_host import (
    SESSION_COOKIE,
    ConsoleHost,
    Visitor,
    viewer_of,
    visitor,
)
from ckptd.daemon.telemetry.job_search import find
from ckptd.daemon.telemetry.page_parts import href
from ckptd.daemon.telemetry.pages_misc import render_confirm, render_login, render_message
from ckptd.store import store_from_settings
from ckptd.store.audit import record_action
from ckptd.store.replay import replay

log = logging.getLogger(__name__)

MAX_BULK = 1_000_000  # jobs one bulk action may name (a filter that reads files is bounded
# by the search's own bound on reads)
CHUNK = 5_000  # ids per request of a bulk action (a request stays far under its size limit)
SINGLE = {"retry", "cancel", "move", "purge", "pause", "resume", "limit", "run_schedule"}
BULK = {"retry", "purge", "cancel", "replay"}


class Refused(Exception):
    """An action that the gate stops: its HTTP status and why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def add_actions(app: web.Application, host: ConsoleHost) -> None:
    """Register the POST routes on ``app``."""

    async def login(request: web.Request) -> web.StreamResponse:
        who = await visitor(host, request)
        form = await request.post()
        if not host.sessions.csrf_ok(who.binding, _text(form, "csrf")):
            return _refusal(403, "refused: the form's CSRF token is missing or wrong")
        name, secret = _text(form, "user"), _text(form, "password")
        user = await host.blocking(lambda: host.users.check(name, secret)) if name else None
        if user is None:
            log.warning("console login refused", extra={"fields": {
                "user": name[:64], "client": request.remote}})
            _, viewer = await viewer_of(host, request)
            return web.Response(status=401, text=render_login(
                viewer, "wrong user, password or token", host.users.configured),
                content_type="text/html")
        token = host.sessions.start(user, time.time())
        log.info("console login", extra={"fields": {"user": user.name, "role": user.role,
                                                    "client": request.remote}})
        response = web.HTTPSeeOther("/")
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        who = await visitor(host, request)
        form = await request.post()
        if not host.sessions.csrf_ok(who.binding, _text(form, "csrf")):
            return _refusal(403, "refused: the form's CSRF token is missing or wrong")
        host.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = web.HTTPSeeOther("/")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def action(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields = {k: _text(form, k) for k in form if k != "csrf"}
        return await _gated(host, request, form, fields, lambda who: _single(host, fields))

    async def bulk(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields = {k: _text(form, k) for k in form if k != "csrf"}
        if fields.get("confirm") != "yes":
            return await _gated(host, request, form, fields,
                                lambda who: _bulk_count(host, request, fields), audit=False)
        return await _gated(host, request, form, fields, lambda who: _bulk(host, fields))

    for path, handler in (("/login", login), ("/logout", logout), ("/action", action),
                          ("/bulk", bulk)):
        app.router.add_post(path, handler)


Outcome = tuple[str, str, bool] | web.StreamResponse  # (message, page to go back to, failed)


async def _gated(host: ConsoleHost, request: web.Request, form: Mapping[str, object],
                 fields: dict[str, str],
                 run: Callable[[Visitor], Awaitable[Outcome]], audit: bool = True
                 ) -> web.StreamResponse:
    """Check the gate, run the action, record it, go back to the page it concerns."""
    who = await visitor(host, request)
    name = fields.get("action", "?")
    try:
        if not host.settings.console_actions:
            raise Refused(403, "refused: the console is read-only (console_actions = false)")
        if not who.bearer and not host.sessions.csrf_ok(who.binding, _text(form, "csrf")):
            raise Refused(403, "refused: the form's CSRF token is missing or wrong")
        if who.user is None:
            raise Refused(401, "refused: log in first (an operator may act)")
        if not who.user.may_act:
            raise Refused(403, f"refused: {who.user.name} is {who.user.role}; only an "
                               "operator may act")
    except Refused as exc:
        if who.user is not None:
            await _audit(host, request, who, name, fields, str(exc))
        return _refusal(exc.status, str(exc))
    try:
        outcome = await run(who)
    except (CkptdError, ValueError) as exc:
        outcome = (f"{name} failed: {exc}", _back(fields), True)
    if isinstance(outcome, web.StreamResponse):
        return outcome  # a confirm page: nothing was done yet
    message, back, failed = outcome
    if audit:
        try:
            await _audit(host, request, who, name, fields, message)
        except CkptdError as exc:  # done, but not recorded: say so loudly
            log.error("console action done but not recorded in the audit log: %s", exc)
            message += f" (NOT recorded in the audit log: {exc})"
            failed = True
    if who.bearer:
        return web.json_response({"ok": not failed, "message": message},
                                 status=409 if failed else 200)
    host.sessions.flash(who.binding, message, failed)
    return web.HTTPSeeOther(back)


async def _audit(host: ConsoleHost, request: web.Request, who: Visitor, name: str,
                 fields: dict[str, str], result: str) -> None:
    args = {k: v for k, v in fields.items() if k not in ("action", "confirm") and v}
    record = {"user": who.user.name if who.user else None,
              "role": who.user.role if who.user else None,
              "client": request.remote, "via": "token" if who.bearer else "session",
              "action": name, "args": args, "result": result}
    await host.blocking(lambda: record_action(host.store, record))


def _back(fields: dict[str, str]) -> str:
    queue, job_id = fields.get("queue"), fields.get("id")
    if queue and job_id:
        return href("job", queue, job_id)
    if queue:
        return href("queue", queue)
    return "/"


async def _single(host: ConsoleHost, fields: dict[str, str]) -> Outcome:
    """One job's or one queue's action, as the control request the CLI sends."""
    name = fields.get("action", "")
    if name not in SINGLE:
        raise ConfigError(f"unknown action {name!r}")
    queue, job_id = fields.get("queue", ""), fields.get("id", "")
    by = "the console"
    if name == "retry":
        answer = await host.ask("retry", {"queue": queue, "ids": [job_id]})
        return f"retried {len(answer['ids'])} job(s)", _back(fields), False
    if name == "cancel":
        answer = await host.ask("cancel", {"queue": queue, "id": job_id, "by": by})
        return f"cancelled {job_id} (it was {answer['was']})", _back(fields), False
    if name == "move":
        to = fields.get("to", "").strip()
        answer = await host.ask("move", {"queue": queue, "id": job_id, "to": to, "by": by})
        return f"moved {job_id} to queue {to}", href("job", to, job_id), False
    if name == "purge":
        state = parse_state(fields.get("state", ""))
        answer = await host.ask("purge", {"queue": queue, "state": state.value,
                                          "ids": [job_id]})
        return f"purged {answer['count']} job(s)", href("queue", queue), False
    if name == "pause":
        await host.ask("pause", {"queue": queue, "reason": fields.get("reason", "")})
        return f"paused {queue}", _back({"queue": queue}), False
    if name == "resume":
        await host.ask("resume", {"queue": queue})
        return f"resumed {queue}", _back({"queue": queue}), False
    if name == "limit":
        changes: dict[str, int | str | None] = {}
        running = fields.get("max_running", "").strip()
        changes["max_running"] = int(running) if running else None
        rate = fields.get("rate", "").strip()
        changes["rate"] = parse_rate(rate, "rate").text if rate else None
        answer = await host.ask("limit", {"queue": queue, **changes})
        limits = answer.get("limits", {})
        return (f"limits of {queue}: max_running {limits.get('max_running')}, rate "
                f"{limits.get('rate')}", _back({"queue": queue}), False)
    answer = await host.ask("run_schedule", {"name": fields.get("name", ""), "by": by})
    return f"schedule {fields.get('name')} submitted job {answer.get('id')}", "/", False


def _bulk_filter(fields: dict[str, str]) -> tuple[str, State, JobFilter]:
    where = [w for w in fields.get("where", "").split(",") if w.strip()]
    flt = make_filter(where, fields.get("error"), fields.get("since"), fields.get("until"),
                      now=time.time())
    name = fields.get("action", "")
    if name not in BULK:
        raise ConfigError(f"unknown bulk action {name!r}")
    return fields.get("queue", ""), parse_state(fields.get("state", "")), flt


async def _matching(host: ConsoleHost, queue: str, state: State, flt: JobFilter
                    ) -> tuple[list[str], bool]:
    found = await host.blocking(lambda: find(host.listings, queue, state, flt,
                                             everything=True))
    return found.ids[:MAX_BULK], found.complete


async def _bulk_count(host: ConsoleHost, request: web.Request, fields: dict[str, str]
                      ) -> Outcome:
    """The confirm step: how many jobs the action would take."""
    queue, state, flt = _bulk_filter(fields)
    ids, complete = await _matching(host, queue, state, flt)
    what = {"retry": f"{state.value} jobs of {queue} back to pending",
            "purge": f"{state.value} jobs of {queue} deleted, with their checkpoints",
            "cancel": f"pending jobs of {queue} cancelled",
            "replay": f"{state.value} jobs of {queue} copied as new pending jobs"}
    note = f"matching: {flt.describe()}" + ("" if complete else
                                             " (the search stopped at its bound: narrow it)")
    _, viewer = await viewer_of(host, request)
    page = render_confirm(f"{fields['action']} all matching", len(ids),
                          what[fields["action"]], fields, viewer, note)
    return web.Response(text=page, content_type="text/html")


async def _bulk(host: ConsoleHost, fields: dict[str, str]) -> Outcome:
    """Carry out a confirmed bulk action on every job the filter takes (now)."""
    queue, state, flt = _bulk_filter(fields)
    name = fields["action"]
    back = href("queue", queue)
    if name == "replay":
        settings = host.settings
        # Written through a store of its own, as `ckptd --root ... replay` would (the
        # daemon's store object belongs to its loop); the daemon sees the new pending files.
        root = fields.get("to_root", "").strip() or settings.root
        target = await host.blocking(
            lambda: store_from_settings(dataclasses.replace(settings, root=root)))
        try:
            done = await host.blocking(lambda: replay(
                host.store, target, settings, queue, state, flt, now=time.time(),
                keep_checkpoint=fields.get("keep_checkpoint") == "on"))
        finally:
            await host.blocking(target.close)
        return (f"replayed {done.created} job(s) of {queue} into {target.url}", back, False)
    # The ids are found here, in the I/O pool (the loop lists nothing), and sent in chunks:
    # each is one request that the daemon carries out a slice per turn.
    ids, _ = await _matching(host, queue, state, flt)
    if not ids:
        return "no job matches: nothing done", back, False
    if name in ("retry", "purge"):
        count = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            if name == "retry":
                count += len((await host.ask("retry", {"queue": queue, "ids": chunk}))["ids"])
            else:
                count += int((await host.ask("purge", {"queue": queue, "state": state.value,
                                                        "ids": chunk}))["count"])
        verb = "retried" if name == "retry" else "purged"
        return f"{verb} {count} job(s) of {queue}", back, False
    cancelled = 0
    for job_id in ids:
        try:
            await host.ask("cancel", {"queue": queue, "id": job_id, "by": "the console"})
            cancelled += 1
        except CkptdError:
            continue  # gone meanwhile
    return f"cancelled {cancelled} job(s) of {queue}", back, False


def _refusal(status: int, why: str) -> web.Response:
    return web.Response(status=status, text=render_message("Refused", why),
                        content_type="text/html")


def _text(form: Mapping[str, object], key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""
