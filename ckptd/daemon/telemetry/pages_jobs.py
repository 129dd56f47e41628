"""The console's pages about jobs: what runs now, jobs by state with paging, search, and one
job's page (its history, checkpoint, result and error as JSON with readable names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ckptd.core.jobs import Job
from ckptd.core.states import State
from ckptd.daemon.telemetry.dashboard import error_text, job_href
from ckptd.daemon.telemetry.job_search import PAGE, Found
from ckptd.daemon.telemetry.page_parts import (
    Viewer,
    dur,
    esc,
    facts_table,
    hidden,
    href,
    json_block,
    link,
    page,
    when,
)
from ckptd.daemon.telemetry.snapshot import Snapshot
from ckptd.wire.protocol import Body


def render_running(snap: Snapshot | None, viewer: Viewer) -> str:
    """Running jobs: queue, id, worker, started, attempt, progress, checkpoint age."""
    if snap is None or not snap.running:
        return page("ckptd: running", "<h1>Running jobs</h1><p class=\"muted\">None.</p>",
                    nav=viewer.nav(), live=True)
    now = snap.at
    rows = []
    for job in snap.running:
        progress = job.progress or {}
        done, total = progress.get("done"), progress.get("total")
        if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            share = max(0.0, min(1.0, done / total))
            bar = (f'<span class="bar"><i style="width:{share * 100:.0f}%"></i></span> '
                   f"{done:g} / {total:g}")
        elif isinstance(done, (int, float)):
            bar = f"{done:g}"
        else:
            bar = "-"
        note = progress.get("note")
        rows.append(
            f'<tr data-job="{esc(job.id)}"><td>{link(job.queue, href("queue", job.queue))}</td>'
            f"<td>{link(job.id, job_href(job.queue, job.id))}</td>"
            f"<td>{esc(job.worker or '-')}</td><td>{esc(when(job.claimed_at))} "
            f'({esc(dur(now - job.claimed_at))} ago)</td><td class="n">{job.attempt}</td>'
            f'<td class="progress" data-done="{esc(done if done is not None else "")}">{bar}'
            f"{' ' + esc(note) if note else ''}</td>"
            f"<td>{esc(dur(now - job.checkpoint_at) + ' ago' if job.checkpoint_at else 'none')}"
            f"</td><td>{_cancel(viewer, job.queue, job.id)}</td></tr>")
    more = "" if len(snap.running) < 1000 else "<p class=\"muted\">The newest 1,000.</p>"
    body = (f"<h1>Running jobs ({len(snap.running)})</h1><table id=\"running\"><tr>"
            "<th>queue</th><th>job</th><th>worker</th><th>started (UTC)</th><th>attempt</th>"
            "<th>progress</th><th>last checkpoint</th><th></th></tr>"
            f"{''.join(rows)}</table>{more}")
    return page("ckptd: running", body, nav=viewer.nav(), live=True)


def _cancel(viewer: Viewer, queue: str, job_id: str) -> str:
    return viewer.button("cancel", {"action": "cancel", "queue": queue, "id": job_id})


def job_buttons(viewer: Viewer, queue: str, job_id: str, state: str) -> str:
    """The actions that fit a job in ``state``."""
    fields = {"queue": queue, "id": job_id}
    if state == State.FAILED.value:
        return (viewer.button("retry", {"action": "retry", **fields})
                + viewer.button("purge", {"action": "purge", "state": state, **fields}))
    if state == State.DONE.value:
        return viewer.button("purge", {"action": "purge", "state": state, **fields})
    if state in (State.PENDING.value, State.CLAIMED.value):
        return viewer.button("cancel", {"action": "cancel", **fields})
    return ""


def render_jobs(queue: str, state: str, found: Found, offset: int, viewer: Viewer) -> str:
    """Jobs of one state, a page at a time."""
    rows = "".join(f"<tr><td>{link(i, job_href(queue, i))}</td>"
                   f"<td>{job_buttons(viewer, queue, i, state)}</td></tr>" for i in found.ids)
    pager = []
    if offset > 0:
        pager.append(link("« newer first page", href("jobs", queue, state)))
        pager.append(link("‹ previous", href("jobs", queue, state,
                                             offset=max(0, offset - PAGE))))
    if offset + PAGE < found.matched:
        pager.append(link("next ›", href("jobs", queue, state, offset=offset + PAGE)))
    last = min(offset + len(found.ids), found.matched)
    body = (f"<h1>{esc(state)} jobs of {link(queue, href('queue', queue))}</h1>"
            f'<div class="meta">{offset + 1 if found.ids else 0}–{last} of {found.matched}'
            f" (by id: creation order) &middot; "
            f"{link('search', href('search', queue=queue, state=state))}"
            f"</div><table id=\"jobs\"><tr><th>job</th><th></th></tr>{rows}</table>"
            f"<p>{' &middot; '.join(pager)}</p>")
    return page(f"ckptd: {queue} {state}", body, nav=viewer.nav())


def render_search(form: dict[str, str], queues: list[str], found: Found | None,
                  viewer: Viewer, problem: str | None = None) -> str:
    """The search form, its results, and the bulk actions on "all matching"."""
    queue, state = form.get("queue", ""), form.get("state", "failed")
    options = "".join(f'<option{" selected" if q == queue else ""}>{esc(q)}</option>'
                      for q in queues)
    states = "".join(f'<option{" selected" if s.value == state else ""}>{s.value}</option>'
                     for s in (State.FAILED, State.DONE, State.PENDING, State.CLAIMED))
    fields = "".join(
        f' {label} <input name="{name}" value="{esc(form.get(name, ""))}" size="{size}" '
        f'placeholder="{esc(hint)}">'
        for name, label, size, hint in (("where", "payload", 18, "sku=A-1"),
                                        ("error", "error", 14, "TimeoutError"),
                                        ("since", "since", 10, "2h or 2026-11-27T18:00Z"),
                                        ("until", "until", 10, "")))
    body = [f'<h1>Search</h1><form method="get" action="/search" id="search">queue '
            f'<select name="queue">{options}</select> state <select name="state">{states}'
            f'</select>{fields} <button type="submit">search</button></form>']
    if problem:
        body.append(f'<p class="flash error">{esc(problem)}</p>')
    if found is not None:
        body.append(_results(form, found, viewer))
    return page("ckptd: search", "".join(body), nav=viewer.nav())


def _results(form: dict[str, str], found: Found, viewer: Viewer) -> str:
    queue, state = form["queue"], form["state"]
    how = (f"read {found.looked} job file(s) of {found.listed} listed" if found.by_files
           else f"from the listing of {found.listed} id(s), no file read")
    more = ""
    if not found.complete:
        more = (f' &middot; stopped at the bound of the files read per search: '
                f'{link("go on", href("search", **{**form, "after": found.resume_after}))}')
    rows = "".join(f"<tr><td>{link(i, job_href(queue, i))}</td>"
                   f"<td>{job_buttons(viewer, queue, i, state)}</td></tr>" for i in found.ids)
    so_far = "" if found.complete else " so far"
    out = [f'<p class="meta" id="matched">{found.matched} match(es){so_far}'
           f" ({how}){more}</p><table id=\"results\"><tr><th>job</th><th></th></tr>{rows}"
           "</table>"]
    if viewer.may_act and found.matched:
        keep = {k: form.get(k) for k in ("queue", "state", "where", "error", "since", "until")}
        actions = [("retry", "retry all matching…")] if state == State.FAILED.value else []
        if state in (State.DONE.value, State.FAILED.value):
            actions += [("purge", "purge all matching…"), ("replay", "replay all matching…")]
        if state == State.PENDING.value:
            actions.append(("cancel", "cancel all matching…"))
        buttons = "".join(viewer.button(label, {**keep, "action": action}, action="/bulk")
                          for action, label in actions)
        out.append(f'<fieldset id="bulk"><legend>All matching</legend>{buttons}</fieldset>')
    return "".join(out)


def render_job(queue: str, job_id: str, info: Body, sentences: list[str],
               viewer: Viewer, problem: str | None = None, flash: str | None = None,
               flash_error: bool = False) -> str:
    """A job's page: why it is where it is, its lease, then the file's parts as JSON."""
    job: dict[str, Any] = info.get("job") or {}
    state = str(info.get("state") or "")
    body = [f'<h1>Job {esc(job_id)}</h1><div class="meta">queue '
            f"{link(queue, href('queue', queue))} &middot; <b id=\"state\">{esc(state)}</b>"
            f"</div>"]
    if problem:
        body.append(f'<p class="failed">{esc(problem)}</p>')
    actions = job_buttons(viewer, queue, job_id, state)
    if viewer.may_act and state in (State.PENDING.value, State.FAILED.value):
        actions += ('<form class="inline" method="post" action="/action">'
                    + hidden({"csrf": viewer.csrf, "action": "move", "queue": queue,
                              "id": job_id}) +
                    ' move to queue <input name="to" size="12"> <button type="submit">move'
                    "</button></form>")
    if actions:
        body.append(f"<p>{actions}</p>")
    if sentences:
        items: list[tuple[str, list[str]]] = []
        for line in sentences:
            if line.startswith("    ") and items:
                items[-1][1].append(line[4:])
            else:
                items.append((line, []))
        body.append('<ul class="explain">' + "".join(
            f"<li>{esc(text)}" + (f"<pre>{esc(chr(10).join(more))}</pre>" if more else "")
            + "</li>" for text, more in items) + "</ul>")
    if info.get("lease"):
        body.append("<h2>Lease</h2>" + facts_table(info["lease"], "lease"))
    error = job.get("last_error")
    if error:
        body.append("<h2>Error</h2>" + json_block(error))
    if state == State.DONE.value:
        body.append("<h2>Result</h2>" + json_block(job.get("result")))
    if info.get("checkpoint") is not None:
        body.append("<h2>Checkpoint</h2>" + json_block(info["checkpoint"]))
    if job.get("history"):
        rows = "".join(
            f"<tr><td class=\"n\">{esc(h.get('attempt', ''))}</td><td>{esc(h.get('worker') or '-')}"
            f"</td><td>{esc(h.get('claimed') or '-')}</td><td>{esc(h.get('ended') or '-')}</td>"
            f"<td>{esc(h.get('outcome') or '')}</td><td>{esc(h.get('error') or '')}</td></tr>"
            for h in job["history"])
        body.append("<h2>History</h2><table id=\"history\"><tr><th>attempt</th><th>worker</th>"
                    f"<th>claimed</th><th>ended</th><th>outcome</th><th>error</th></tr>{rows}"
                    "</table>")
    if job.get("replay_of"):
        origin = job["replay_of"]
        body.append("<h2>Replay of</h2>" + facts_table(origin))
    body.append("<h2>Payload</h2>" + json_block(job.get("payload")))
    facts = {k: v for k, v in job.items()
             if k not in ("payload", "result", "last_error", "history", "replay_of")}
    body.append("<h2>Job file</h2>" + facts_table(facts, "facts")
                + f'<p class="muted">{esc(info.get("path") or "")}</p>')
    return page(f"ckptd: {queue} / {job_id}", "".join(body), nav=viewer.nav(),
                live=state == State.CLAIMED.value, flash=flash, flash_error=flash_error)


def failure_summary(job: Job) -> str:
    """``Type: message`` of a failed job's last error."""
    error: Mapping[str, object] = job.get("last_error") or {}
    return error_text(str(error.get("type") or "Error"), str(error.get("message") or ""))
