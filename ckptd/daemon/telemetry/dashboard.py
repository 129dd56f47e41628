"""The read-only web dashboard: server-rendered HTML with small inline SVG charts.

No scripts, no forms, no build step: every page is a GET that renders a
:class:`ckptd.daemon.telemetry.snapshot.Snapshot` (or, for a job page, what ``explain``
says). Everything that comes from users (queue names, job ids, batches, error messages,
payloads) is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

from ckptd.core.controls_text import controls_summary
from ckptd.core.timefmt import format_duration, utc_iso
from ckptd.daemon.telemetry.metrics import MinuteSample
from ckptd.daemon.telemetry.snapshot import QueueSnapshot, Snapshot

REFRESH_SECONDS = 5

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d232a;background:#fafbfc}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.15em;margin:1.6em 0 .4em}
h3{font-size:1em;margin:1em 0 .3em}
.meta{color:#5b6670;margin-bottom:1em}
table{border-collapse:collapse;background:#fff;margin:.3em 0}
th,td{border:1px solid #d8dde2;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b42318} .done{color:#1a7f37} .muted{color:#5b6670}
pre{background:#fff;border:1px solid #d8dde2;padding:.6em;overflow:auto;max-height:30em}
.charts{display:flex;gap:1.5em;flex-wrap:wrap} .chart{background:#fff;border:1px solid #d8dde2}
ul.explain li{margin:.2em 0} a{color:#0b5cad}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _dur(value: Any) -> str:
    return "-" if value is None else format_duration(float(value))


def _page(title: str, body: str, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title>{meta}<style>{STYLE}</style></head>"
            f"<body>{body}</body></html>\n")


def job_href(queue: str, job_id: str) -> str:
    """The URL path of a job's page."""
    return f"/job/{quote(queue, safe='')}/{quote(job_id, safe='')}"


# -- charts -------------------------------------------------------------------------------

def bar_chart(minutes: tuple[MinuteSample, ...], now: float, width: int = 480,
              height: int = 120) -> str:
    """Jobs finished per minute over the last hour: done (green) under failed (red)."""
    pad_left, pad_bottom = 34, 16
    inner_w, inner_h = width - pad_left - 4, height - pad_bottom - 6
    start = (int(now // 60) - 59) * 60.0
    by_start = {m.start: m for m in minutes}
    peak = max([m.succeeded + m.failed for m in minutes] + [1])
    bar_w = inner_w / 60.0
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             "<title>jobs finished per minute, last hour</title>"]
    for slot in range(60):
        sample = by_start.get(start + slot * 60.0)
        if sample is None:
            continue
        x = pad_left + slot * bar_w
        ok_h = inner_h * sample.succeeded / peak
        bad_h = inner_h * sample.failed / peak
        base = 6 + inner_h
        if ok_h:
            parts.append(f'<rect x="{x:.1f}" y="{base - ok_h:.1f}" width="{max(bar_w - 1, 1):.1f}"'
                         f' height="{ok_h:.1f}" fill="#2da44e"><title>{sample.succeeded} done, '
                         f'{sample.failed} failed at {_e(utc_iso(sample.start)[11:16])}'
                         "</title></rect>")
        if bad_h:
            parts.append(f'<rect x="{x:.1f}" y="{base - ok_h - bad_h:.1f}" '
                         f'width="{max(bar_w - 1, 1):.1f}" height="{bad_h:.1f}" fill="#cf222e"/>')
    parts += _axes(width, height, pad_left, pad_bottom, str(peak), "jobs/min")
    parts.append("</svg>")
    return "".join(parts)


def line_chart(minutes: tuple[MinuteSample, ...], now: float, width: int = 480,
               height: int = 120) -> str:
    """Lead time per minute over the last hour: mean (blue) and p95 estimate (orange)."""
    pad_left, pad_bottom = 34, 16
    inner_w, inner_h = width - pad_left - 4, height - pad_bottom - 6
    start = (int(now // 60) - 59) * 60.0
    values = [v for m in minutes for v in (m.lead_mean, m.lead_p95) if v is not None]
    peak = max(values + [0.001])
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             "<title>lead time per minute, last hour</title>"]
    for attr, colour in (("lead_mean", "#0969da"), ("lead_p95", "#bc4c00")):
        points = []
        for m in minutes:
            value = getattr(m, attr)
            slot = (m.start - start) / 60.0
            if value is None or slot < 0:
                continue
            x = pad_left + (slot + 0.5) * inner_w / 60.0
            y = 6 + inner_h - inner_h * value / peak
            points.append(f"{x:.1f},{y:.1f}")
        if len(points) == 1:
            cx, cy = points[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
        elif points:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                         f'points="{" ".join(points)}"/>')
    parts += _axes(width, height, pad_left, pad_bottom, format_duration(peak),
                   "lead time: mean (blue), p95 (orange)")
    parts.append("</svg>")
    return "".join(parts)


def _axes(width: int, height: int, pad_left: int, pad_bottom: int, top: str, label: str
          ) -> list[str]:
    bottom = height - pad_bottom
    return [f'<line x1="{pad_left}" y1="6" x2="{pad_left}" y2="{bottom}" stroke="#8c959f"/>',
            f'<line x1="{pad_left}" y1="{bottom}" x2="{width - 4}" y2="{bottom}" '
            'stroke="#8c959f"/>',
            f'<text x="{pad_left - 3}" y="14" font-size="10" text-anchor="end">{_e(top)}</text>',
            f'<text x="{pad_left - 3}" y="{bottom}" font-size="10" text-anchor="end">0</text>',
            f'<text x="{pad_left}" y="{height - 3}" font-size="10">-60 min</text>',
            f'<text x="{width - 4}" y="{height - 3}" font-size="10" text-anchor="end">now</text>',
            f'<text x="{(width + pad_left) / 2:.0f}" y="{height - 3}" font-size="10" '
            f'text-anchor="middle">{_e(label)}</text>']


# -- pages --------------------------------------------------------------------------------

STATE_COLUMNS = ("pending", "delayed", "claimed", "done", "failed")


def render_index(snap: Snapshot | None, now: float | None = None) -> str:
    """The overview: queues, charts, batches, recent failures, workers."""
    if snap is None:
        return _page("ckptd", "<h1>ckptd</h1><p>Starting: no figures yet.</p>", refresh=True)
    now = snap.at if now is None else now
    body = [f"<h1>ckptd</h1><div class=\"meta\">daemon <b>{_e(snap.daemon)}</b> &middot; store "
            f"<code>{_e(snap.root)}</code> &middot; up {_e(_dur(snap.at - snap.started_at))} "
            f"&middot; {snap.workers} worker(s) &middot; figures of "
            f"{_e(utc_iso(snap.at)[:19])}Z"
            + (" &middot; <b>stopping</b>" if snap.stopping else "")
            + ' &middot; <a href="/metrics">/metrics</a></div>']
    body.append(_queue_table(snap))
    for q in snap.queues:
        body.append(_queue_section(q, now))
    body.append(_workers(snap))
    if snap.schedules:
        rows = "".join(f"<tr><td>{_e(r['name'])}</td><td>{_e(r['queue'])}</td>"
                       f"<td>{_e(r['when'])}</td><td>{_e(r['next'])}</td>"
                       f"<td>{_e(r['last'] or 'never')}</td><td>{_e(r['catch_up'])}</td></tr>"
                       for r in snap.schedules)
        body.append("<h2>Schedules</h2><table id=\"schedules\"><tr><th>schedule</th>"
                    "<th>queue</th><th>when</th><th>next</th><th>last</th><th>catch_up</th>"
                    f"</tr>{rows}</table>")
    if snap.drops:
        rows = "".join(f"<tr><td>{_e(k)}</td><td class=\"n\">{v}</td></tr>"
                       for k, v in sorted(snap.drops.items()))
        body.append(f"<h2>Dropped messages</h2><table><tr><th>socket:reason</th><th>count</th>"
                    f"</tr>{rows}</table>")
    return _page("ckptd dashboard", "".join(body), refresh=True)


def _queue_table(snap: Snapshot) -> str:
    if not snap.queues:
        return "<p>No queues yet.</p>"
    head = ("<tr><th>queue</th>" + "".join(f"<th>{c}</th>" for c in STATE_COLUMNS)
            + "<th>jobs/s (1 min)</th><th>lead p50 / p95</th><th>cycle p50 / p95</th>"
              "<th>oldest pending</th><th>workers</th></tr>")
    rows = []
    for q in snap.queues:
        f = q.figures
        cells = "".join(f'<td class="n {c}" data-queue="{_e(q.name)}" data-state="{c}">'
                        f"{q.counts.get(c, 0)}</td>" for c in STATE_COLUMNS)
        rows.append(f'<tr><td><a href="#q-{_e(q.name)}">{_e(q.name)}</a></td>{cells}'
                    f'<td class="n">{f["throughput_1m"]:.2f}</td>'
                    f'<td class="n">{_dur(f["lead_p50_s"])} / {_dur(f["lead_p95_s"])}</td>'
                    f'<td class="n">{_dur(f["cycle_p50_s"])} / {_dur(f["cycle_p95_s"])}</td>'
                    f'<td class="n">{_dur(f["oldest_pending_age_s"])}</td>'
                    f'<td class="n">{f["workers"]}</td></tr>')
    return f"<h2>Queues</h2><table id=\"queues\">{head}{''.join(rows)}</table>"


def _queue_section(q: QueueSnapshot, now: float) -> str:
    out = [f'<h2 id="q-{_e(q.name)}">Queue {_e(q.name)}</h2>',
           f'<div class="meta">since the daemon started: {q.counters["submitted"]} submitted, '
           f'{q.counters["succeeded"]} succeeded, {q.counters["failed"]} failed, '
           f'{q.counters["retried"]} retried, {q.counters["expired"]} leases expired, '
           f'{q.counters["stale_answers"]} stale answers; dispatch latency mean '
           f"{_dur(q.dispatch.mean())}</div>",
           f'<div class="meta controls">controls: {_e(controls_summary(q.controls) or "none")}'
           "</div>",
           '<div class="charts">', bar_chart(q.minutes, now), line_chart(q.minutes, now),
           "</div>"]
    if q.batches:
        rows = "".join(
            f"<tr><td>{_e(b.name)}</td><td class=\"n\">{b.submitted}</td>"
            f"<td class=\"n\">{b.succeeded}</td><td class=\"n\">{b.failed}</td>"
            f"<td class=\"n\">{b.retried}</td><td class=\"n\">{_dur(b.lead.mean())}</td>"
            f"<td class=\"n\">{_dur(b.cycle.mean())}</td></tr>" for b in q.batches[-50:])
        out.append("<h3>Batches (since the daemon started)</h3><table><tr><th>batch</th>"
                   "<th>submitted</th><th>succeeded</th><th>failed</th><th>retried</th>"
                   f"<th>lead mean</th><th>cycle mean</th></tr>{rows}</table>")
    if q.failures:
        rows = "".join(
            f'<tr><td><a href="{_e(job_href(q.name, n.id))}">{_e(n.id)}</a></td>'
            f"<td>{_e(utc_iso(n.at)[:19]) if n.at else '-'}</td><td class=\"n\">{n.attempts}</td>"
            f"<td>{_e(n.batch or '')}</td>"
            f"<td class=\"failed\">{_e(error_text(n.type, n.message))}</td>"
            "</tr>" for n in reversed(q.failures))
        out.append(f"<h3>Failed jobs (latest {len(q.failures)})</h3><table class=\"failures\">"
                   "<tr><th>job</th><th>failed at (UTC)</th><th>attempts</th><th>batch</th>"
                   f"<th>error</th></tr>{rows}</table>")
    return "".join(out)


def _workers(snap: Snapshot) -> str:
    if not snap.worker_list:
        return "<h2>Workers</h2><p class=\"muted\">No worker connected.</p>"
    rows = "".join(
        f"<tr><td>{_e(w['id'])}</td><td>{_e(w['host'])}</td><td>{_e(', '.join(w['queues']))}"
        f"</td><td class=\"n\">{w['running']}</td><td class=\"n\">{w['free']}/{w['slots']}</td>"
        f"<td class=\"n\">{_e(w['seen_s_ago'])}s</td></tr>" for w in snap.worker_list)
    return ("<h2>Workers</h2><table><tr><th>worker</th><th>host</th><th>queues</th>"
            f"<th>running</th><th>free slots</th><th>last heard</th></tr>{rows}</table>")


def render_job(queue: str, job_id: str, info: dict[str, Any] | None, sentences: list[str],
               problem: str | None = None) -> str:
    """A job's page: what ``ckptd explain`` says, then the file and its checkpoint."""
    title = f"{queue} / {job_id}"
    body = [f'<p><a href="/">&larr; dashboard</a></p><h1>Job {_e(job_id)}</h1>'
            f'<div class="meta">queue {_e(queue)}</div>']
    if problem:
        body.append(f'<p class="failed">{_e(problem)}</p>')
    if sentences:
        items: list[tuple[str, list[str]]] = []  # sentence, the lines that continue it
        for line in sentences:
            if line.startswith("    ") and items:
                items[-1][1].append(line[4:])
            else:
                items.append((line, []))
        body.append('<ul class="explain">' + "".join(
            f"<li>{_e(text)}" + (f"<pre>{_e(chr(10).join(more))}</pre>" if more else "")
            + "</li>" for text, more in items) + "</ul>")
    if info is not None:
        if info.get("lease"):
            rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                           for k, v in info["lease"].items())
            body.append(f"<h2>Lease</h2><table>{rows}</table>")
        body.append(f"<h2>Job file</h2><pre>{_e(_pretty(info.get('job')))}</pre>")
        if info.get("checkpoint") is not None:
            body.append(f"<h2>Checkpoint</h2><pre>{_e(_pretty(info['checkpoint']))}</pre>")
    return _page(title, "".join(body))


def render_message(title: str, message: str) -> str:
    """A plain page with one message (not found, bad request)."""
    return _page(title, f'<p><a href="/">&larr; dashboard</a></p><h1>{_e(title)}</h1>'
                        f"<p>{_e(message)}</p>")


def error_text(kind: str, message: str) -> str:
    """``Type: message``, without repeating the type when the message starts with it."""
    return message if message.startswith(f"{kind}:") else f"{kind}: {message}"


def _pretty(value: Any, limit: int = 64 * 1024) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "\n... (cut)"
