"""The console's other pages: workers, the audit log, logging in, the confirm step of a bulk
action, and plain messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ckptd.daemon.telemetry.page_parts import Viewer, esc, hidden, page
from ckptd.daemon.telemetry.snapshot import Snapshot


def render_workers(snap: Snapshot | None, viewer: Viewer) -> str:
    """Workers: slots (jobs at once) and credits (jobs the daemon may still send, prefetch
    included) told apart; draining workers marked."""
    workers = snap.worker_list if snap is not None else ()
    if not workers:
        return page("ckptd: workers", "<h1>Workers</h1><p class=\"muted\">No worker "
                    "connected.</p>", nav=viewer.nav(), live=True)
    rows = "".join(
        f"<tr data-worker=\"{esc(w['id'])}\"><td>{esc(w['id'])}"
        + ('<span class="tag draining" title="told to stop: finishing its jobs">draining'
           "</span>" if w.get("draining") else "")
        + f"</td><td>{esc(w['host'])}</td><td>{esc(', '.join(w['queues']))}</td>"
        f"<td class=\"n\">{w['running']}</td><td class=\"n slots\">{w['slots']}</td>"
        f"<td class=\"n free\">{w['free']}</td><td class=\"n\">{w.get('credits', 0)}</td>"
        f"<td class=\"n\">{w.get('extra', 0)}</td><td class=\"n\">{esc(w['seen_s_ago'])}s</td>"
        "</tr>" for w in workers)
    body = ("<h1>Workers</h1><p class=\"meta\">Slots: jobs a worker runs at once. Credits: "
            "jobs the daemon may still send it, prefetch (extra) included.</p>"
            "<table id=\"workers\"><tr><th>worker</th><th>host</th><th>queues</th>"
            "<th>running</th><th>slots</th><th>free slots</th><th>credits</th>"
            f"<th>prefetch extra</th><th>last heard</th></tr>{rows}</table>")
    return page("ckptd: workers", body, nav=viewer.nav(), live=True)


def render_audit(records: Sequence[Mapping[str, object]], where: str, viewer: Viewer
                 ) -> str:
    """The latest actions taken through the console."""
    rows = "".join(
        f"<tr><td>{esc(r.get('at', ''))}</td><td>{esc(r.get('user', ''))}</td>"
        f"<td>{esc(r.get('client', ''))}</td><td>{esc(r.get('action', ''))}</td>"
        f"<td>{esc(_args(r.get('args')))}</td><td>{esc(r.get('result', ''))}</td></tr>"
        for r in records)
    body = (f"<h1>Audit log</h1><p class=\"meta\">{esc(where)}</p><table id=\"audit\"><tr>"
            "<th>when</th><th>who</th><th>from</th><th>action</th><th>on</th><th>result</th>"
            f"</tr>{rows}</table>")
    return page("ckptd: audit", body, nav=viewer.nav())


def _args(args: object) -> str:
    if not isinstance(args, dict):
        return ""
    return ", ".join(f"{k}={v}" for k, v in args.items() if v not in (None, ""))


def render_login(viewer: Viewer, problem: str | None = None, users: bool = True) -> str:
    """The login form (a user and its password, or a token)."""
    if not users:
        body = ("<h1>Log in</h1><p>No users are set: give the daemon a users file "
                "(<code>console_users</code>) written with <code>ckptd console-user</code>."
                "</p>")
        return page("ckptd: log in", body, nav=viewer.nav())
    body = ("<h1>Log in</h1><form method=\"post\" action=\"/login\" id=\"login\">"
            f"{hidden({'csrf': viewer.csrf})}<p>user <input name=\"user\" id=\"user\" "
            "autocomplete=\"username\"></p><p>password or token <input name=\"password\" "
            "id=\"password\" type=\"password\" autocomplete=\"current-password\"></p>"
            "<p><button type=\"submit\">log in</button></p></form>")
    return page("ckptd: log in", body, nav=viewer.nav(), flash=problem,
                flash_error=problem is not None)


def render_confirm(title: str, count: int, what: str, fields: Mapping[str, object],
                   viewer: Viewer, note: str = "") -> str:
    """The confirm step of a bulk action: how many jobs, what will happen, one button."""
    body = (f"<h1>{esc(title)}</h1><p id=\"count\" data-count=\"{count}\">"
            f"<b>{count}</b> job(s): {esc(what)}</p>"
            + (f"<p class=\"meta\">{esc(note)}</p>" if note else "")
            + f"<form method=\"post\" action=\"/bulk\">{hidden({**fields, 'csrf': viewer.csrf})}"
            + (_replay_inputs() if fields.get("action") == "replay" else "")
            + ""
            "<input type=\"hidden\" name=\"confirm\" value=\"yes\">"
            f"<button type=\"submit\" id=\"confirm\">{esc(title)}: {count} job(s)</button> "
            "<a href=\"/\">cancel</a></form>")
    return page("ckptd: confirm", body, nav=viewer.nav())


def _replay_inputs() -> str:
    return ("<p>into the store <input name=\"to_root\" size=\"40\" placeholder=\"(this "
            "daemon's store)\"> <label><input type=\"checkbox\" name=\"keep_checkpoint\"> "
            "with their checkpoints</label></p>")


def render_message(title: str, message: str, viewer: Viewer | None = None) -> str:
    """A plain page with one message (not found, refused)."""
    return page(title, f"<h1>{esc(title)}</h1><p>{esc(message)}</p>",
                nav=viewer.nav() if viewer else "")
