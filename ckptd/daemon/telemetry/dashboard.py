"""The console's overview and queue pages, rendered from a snapshot (no store read, so the
page costs the same with a million jobs as with ten).

The overview is the queue table (paused and limited queues marked, a failed count in red
only when it is not 0, the autoscaling figures), the charts of the queues that had traffic
in the last hour (an idle queue draws none), running jobs in short, workers, schedules and
dropped messages. A queue's page adds its controls and the actions on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ckptd.core.controls_text import controls_summary
from ckptd.core.timefmt import utc_iso
from ckptd.daemon.telemetry.autoscale import scale_of
from ckptd.daemon.telemetry.charts import bar_chart, had_traffic, line_chart
from ckptd.daemon.telemetry.page_parts import Viewer, dur, esc, href, link, page, when
from ckptd.daemon.telemetry.snapshot import QueueSnapshot, Snapshot

STATE_COLUMNS = ("pending", "delayed", "waiting", "claimed", "done", "failed")


def job_href(queue: str, job_id: str) -> str:
    """The URL path of a job's page."""
    return href("job", queue, job_id)


def error_text(kind: str, message: str) -> str:
    """``Type: message``, without repeating the type when the message starts with it."""
    return message if message.startswith(f"{kind}:") else f"{kind}: {message}"


def render_index(snap: Snapshot | None, viewer: Viewer, flash: str | None = None) -> str:
    """The overview."""
    if snap is None:
        return page("ckptd", "<h1>ckptd</h1><p>Starting: no figures yet.</p>",
                    nav=viewer.nav(), live=True)
    body = [f"<h1>ckptd</h1>{_meta(snap)}", queue_table(snap)]
    running = len(snap.running)
    body.append(f'<p>{link(f"{running} job(s) running", "/running")} &middot; '
                f'{link(f"{snap.workers} worker(s)", "/workers")}</p>')
    busy = [q for q in snap.queues if had_traffic(q.minutes)]
    for q in busy:
        body.append(f'<h2 id="q-{esc(q.name)}">{link(q.name, href("queue", q.name))}</h2>'
                    f'<div class="charts">{bar_chart(q.minutes, snap.at)}'
                    f"{line_chart(q.minutes, snap.at)}</div>")
    idle = len(snap.queues) - len(busy)
    if idle and busy:
        body.append(f'<p class="muted">{idle} queue(s) finished nothing in the last hour: '
                    "no charts.</p>")
    if snap.schedules:
        body.append(schedules_table(snap, viewer))
    if snap.drops:
        rows = "".join(f"<tr><td>{esc(k)}</td><td class=\"n\">{v}</td></tr>"
                       for k, v in sorted(snap.drops.items()))
        body.append(f"<h2>Dropped messages</h2><table><tr><th>socket:reason</th>"
                    f"<th>count</th></tr>{rows}</table>")
    return page("ckptd console", "".join(body), nav=viewer.nav(), live=True, flash=flash)


def _meta(snap: Snapshot) -> str:
    return (f'<div class="meta">daemon <b>{esc(snap.daemon)}</b> &middot; store '
            f"<code>{esc(snap.root)}</code> &middot; up {esc(dur(snap.at - snap.started_at))}"
            f" &middot; figures of {esc(when(snap.at))}"
            + (" &middot; <b>stopping</b>" if snap.stopping else "") + "</div>")


def queue_tags(q: QueueSnapshot) -> str:
    """``paused`` and ``limited`` marks of a queue."""
    tags = []
    controls = q.controls or {}
    paused = controls.get("paused")
    if paused:
        reason = paused.get("reason") if isinstance(paused, dict) else ""
        tags.append(f'<span class="tag paused" title="{esc(reason or "")}">paused</span>')
    limits = controls.get("limits") or {}
    if limits.get("max_running") is not None or limits.get("rate"):
        text = ", ".join(p for p in (
            f"max {limits['max_running']} running" if limits.get("max_running") is not None
            else "", f"rate {limits['rate']}" if limits.get("rate") else "") if p)
        tags.append(f'<span class="tag limited" title="{esc(text)}">limited</span>')
    return "".join(tags)


def queue_table(snap: Snapshot) -> str:
    """One row per queue: counts per state, speed, times, workers and the scale signal."""
    if not snap.queues:
        return "<p>No queues yet.</p>"
    columns = [c for c in STATE_COLUMNS
               if c != "waiting" or any("waiting" in q.counts for q in snap.queues)]
    head = ("<tr><th>queue</th>" + "".join(f"<th>{c}</th>" for c in columns)
            + "<th>jobs/s (1 min)</th><th>lead p50 / p95</th><th>cycle p50 / p95</th>"
              "<th>oldest pending</th><th>workers</th><th>slots</th>"
              "<th>backlog / slot</th><th>workers needed</th></tr>")
    rows = []
    for q in snap.queues:
        f = q.figures
        cells = []
        for c in columns:
            n = q.counts.get(c, 0)
            css = "n " + (c if n else "zero")
            cells.append(f'<td class="{css}" data-queue="{esc(q.name)}" data-state="{c}">'
                         f'{link(str(n), href("jobs", q.name, c)) if n else n}</td>')
        scale = scale_of(q, snap.drain_target)
        rows.append(
            f'<tr data-row="{esc(q.name)}"><td>{link(q.name, href("queue", q.name))}'
            f"{queue_tags(q)}</td>{''.join(cells)}"
            f'<td class="n">{f["throughput_1m"]:.2f}</td>'
            f'<td class="n">{dur(f["lead_p50_s"])} / {dur(f["lead_p95_s"])}</td>'
            f'<td class="n">{dur(f["cycle_p50_s"])} / {dur(f["cycle_p95_s"])}</td>'
            f'<td class="n">{dur(f["oldest_pending_age_s"])}</td>'
            f'<td class="n">{f["workers"]}</td><td class="n">{f.get("slots", 0)}</td>'
            f'<td class="n">{scale.per_slot:.1f}</td><td class="n">{scale.needed}</td></tr>')
    return f"<h2>Queues</h2><table id=\"queues\">{head}{''.join(rows)}</table>"


def schedules_table(snap: Snapshot, viewer: Viewer) -> str:
    """The schedules, with a "run now" button for operators."""
    rows = "".join(
        f"<tr><td>{esc(r['name'])}</td><td>{esc(r['queue'])}</td><td>{esc(r['when'])}</td>"
        f"<td>{esc(r['next'])}</td><td>{esc(r['last'] or 'never')}</td>"
        f"<td>{esc(r['catch_up'])}</td><td>"
        f"{viewer.button('run now', {'action': 'run_schedule', 'name': r['name']})}</td></tr>"
        for r in snap.schedules)
    return ("<h2>Schedules</h2><table id=\"schedules\"><tr><th>schedule</th><th>queue</th>"
            "<th>when</th><th>next</th><th>last</th><th>catch_up</th><th></th></tr>"
            f"{rows}</table>")


def render_queue(snap: Snapshot, name: str, viewer: Viewer, flash: str | None = None,
                 flash_error: bool = False) -> str:
    """One queue: its row, controls, actions, charts, batches and latest failures."""
    q = next((x for x in snap.queues if x.name == name), None)
    if q is None:
        return page("Not found", f"<h1>No queue {esc(name)}</h1>", nav=viewer.nav())
    body = [f"<h1>Queue {esc(name)}{queue_tags(q)}</h1>",
            queue_table(Snapshot(snap.at, snap.daemon, snap.root, snap.started_at,
                                 snap.workers, snap.stopping, {}, {}, (q,),
                                 drain_target=snap.drain_target)),
            f'<div class="meta controls">controls: {esc(controls_summary(q.controls) or "none")}'
            "</div>",
            f'<div class="meta">since the daemon started: {q.counters["submitted"]} submitted, '
            f'{q.counters["succeeded"]} succeeded, {q.counters["failed"]} failed, '
            f'{q.counters["retried"]} retried, {q.counters["expired"]} leases expired</div>']
    body.append(_queue_actions(q, viewer))
    if had_traffic(q.minutes):
        body.append(f'<div class="charts">{bar_chart(q.minutes, snap.at)}'
                    f"{line_chart(q.minutes, snap.at)}</div>")
    if q.batches:
        rows = "".join(
            f"<tr><td>{esc(b.name)}</td><td class=\"n\">{b.submitted}</td>"
            f"<td class=\"n\">{b.succeeded}</td><td class=\"n\">{b.failed}</td>"
            f"<td class=\"n\">{b.retried}</td><td class=\"n\">{dur(b.lead.mean())}</td>"
            f"<td class=\"n\">{dur(b.cycle.mean())}</td></tr>" for b in q.batches[-50:])
        body.append("<h2>Batches</h2><table><tr><th>batch</th><th>submitted</th>"
                    "<th>succeeded</th><th>failed</th><th>retried</th><th>lead mean</th>"
                    f"<th>cycle mean</th></tr>{rows}</table>")
    if q.failures:
        rows = "".join(
            f'<tr><td>{link(n.id, job_href(q.name, n.id))}</td>'
            f"<td>{esc(utc_iso(n.at)[:19]) if n.at else '-'}</td><td class=\"n\">{n.attempts}"
            f"</td><td class=\"failed\">{esc(error_text(n.type, n.message))}</td>"
            f"<td>{viewer.button('retry', {'action': 'retry', 'queue': q.name, 'id': n.id})}"
            "</td></tr>" for n in reversed(q.failures))
        body.append(f"<h2>Latest failures ({len(q.failures)})</h2><table class=\"failures\">"
                    "<tr><th>job</th><th>failed at (UTC)</th><th>attempts</th><th>error</th>"
                    f"<th></th></tr>{rows}</table>")
    return page(f"ckptd: {name}", "".join(body), nav=viewer.nav(), live=True, flash=flash,
                flash_error=flash_error)


def _queue_actions(q: QueueSnapshot, viewer: Viewer) -> str:
    links = " &middot; ".join(link(f"{state} jobs", href("jobs", q.name, state))
                              for state in ("pending", "claimed", "done", "failed"))
    out = [f"<p>{links} &middot; {link('search', href('search', queue=q.name))}</p>"]
    if not viewer.may_act:
        return "".join(out)
    paused = bool((q.controls or {}).get("paused"))
    limits: Mapping[str, object] = (q.controls or {}).get("limits") or {}
    pause = viewer.button("resume", {"action": "resume", "queue": q.name}) if paused else (
        f'<form class="inline" method="post" action="/action"><input type="hidden" '
        f'name="csrf" value="{esc(viewer.csrf)}"><input type="hidden" name="action" '
        f'value="pause"><input type="hidden" name="queue" value="{esc(q.name)}">'
        '<input name="reason" placeholder="reason" size="18"> '
        '<button type="submit" id="pause">pause</button></form>')
    running = limits.get("max_running")
    rate = limits.get("rate")
    out.append(
        f"<fieldset><legend>Actions</legend>{pause} "
        f'<form class="inline" method="post" action="/action">'
        f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
        f'<input type="hidden" name="action" value="limit">'
        f'<input type="hidden" name="queue" value="{esc(q.name)}"> max running '
        f'<input name="max_running" size="5" value="{esc("" if running is None else running)}">'
        f' rate <input name="rate" size="7" placeholder="100/s" value="{esc(rate or "")}"> '
        '<button type="submit">set limits</button></form> '
        + viewer.button("retry all failed…", {"queue": q.name, "state": "failed",
                                              "action": "retry"}, action="/bulk")
        + viewer.button("purge all done…", {"queue": q.name, "state": "done",
                                            "action": "purge"}, action="/bulk")
        + "</fieldset>")
    return "".join(out)
