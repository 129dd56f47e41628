"""``ckptd status``: counts per state and the recent figures, as a table, JSON, or live.

Through a daemon the answer comes from its index (counts, throughput over the last minute,
lead and cycle time p50/p95 over the last jobs, the oldest pending job's age, workers), so it
costs the same with a million jobs as with ten. On a bare store the folders are listed and
only the counts are known.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ckptd.core.answer_types import KeyRow, QueueStatus, ScheduleRow, StatusAnswer
from ckptd.core.controls_text import controls_summary
from ckptd.core.errors import CkptdError, remote_error
from ckptd.core.timefmt import format_duration

WATCH_INTERVAL = 1.0
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


def _dur(value: float | None) -> str:
    return "-" if value is None else format_duration(float(value))


def _pair(a: float | None, b: float | None) -> str:
    if a is None and b is None:
        return "-"
    return f"{_dur(a)}/{_dur(b)}"


def _table(headers: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)
           ) -> list[str]:
    """Lines of a table: the columns in ``left`` flush left, the others flush right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) if i in left else cell.rjust(widths[i])
                         for i, cell in enumerate(cells)).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def status_table(answer: StatusAnswer) -> str:
    """The status answer as a table, one row per queue, with a line about the source."""
    queues = answer.get("queues") or {}
    daemon = answer.get("source") == "daemon"
    lines = []
    if daemon:
        info = answer.get("daemon")
        uptime = info.get("uptime_s") if info else None
        extra = f", up {_dur(uptime)}" if uptime is not None else ""
        stopping = ", STOPPING" if info and info.get("stopping") else ""
        lines.append(f"{answer.get('root', '')}  (daemon {info.get('name', '?') if info else '?'}"
                     f"{extra}, {answer.get('workers', 0)} worker(s){stopping})")
        store = info.get("store") if info else None
        if store and store.get("available") is False:
            lines.append(f"STORE UNAVAILABLE for {_dur(store.get('unavailable_s'))}: "
                         f"{store.get('error')}")
        recovery = info.get("recovery") if info else None
        if recovery and recovery.get("running"):  # the counts grow while the store is listed
            listed = sum(q.get("pending", 0) for q in (recovery.get("queues") or {}).values())
            lines.append(f"recovering: listing the store for {_dur(recovery.get('seconds'))}, "
                         f"{listed:,} pending job(s) so far")
    else:
        lines.append(f"{answer.get('root', '')}  (store listing: add --connect for rates, "
                     "lead/cycle times and workers)")
    if not queues:
        lines.append("no queues yet")
        return "\n".join(lines)
    if daemon:
        headers = ["queue", "pending", "delayed", "claimed", "waiting", "done", "failed",
                   "jobs/s", "lead p50/p95", "cycle p50/p95", "oldest", "workers"]
    else:
        headers = ["queue", "pending", "claimed", "waiting", "done", "failed", "quarantined"]
    rows = []
    for name, c in queues.items():
        if daemon:
            rows.append([name, str(c.get("pending", 0)), str(c.get("delayed", 0)),
                         str(c.get("claimed", 0)), str(c.get("waiting", 0)),
                         str(c.get("done", 0)),
                         str(c.get("failed", 0)), f"{float(c.get('throughput_1m') or 0):.1f}",
                         _pair(c.get("lead_p50_s"), c.get("lead_p95_s")),
                         _pair(c.get("cycle_p50_s"), c.get("cycle_p95_s")),
                         _dur(c.get("oldest_pending_age_s")), str(c.get("workers", 0))])
        else:
            rows.append([name, str(c.get("pending", 0)), str(c.get("claimed", 0)),
                         str(c.get("waiting", 0)), str(c.get("done", 0)),
                         str(c.get("failed", 0)), str(c.get("quarantined", 0))])
    lines += _table(headers, rows)
    batch_rows = [[batch, name, str(b.get("total", 0)), str(b.get("done", 0)),
                   str(b.get("failed", 0)), str(b.get("open", 0)), _dur(b.get("eta_s")),
                   b.get("then") or ", ".join(f"{k}->{q}" for k, q in
                                              (b.get("callbacks") or {}).items()) or "-"]
                  for name, c in queues.items() for batch, b in (c.get("batches") or {}).items()]
    if batch_rows:
        lines.append("")
        lines += _table(["batch", "queue", "total", "done", "failed", "open", "eta", "then"],
                        batch_rows, left=(0, 1, 7))
    lines += key_lines(queues)
    lines += controls_lines(queues)
    lines += schedule_lines(answer.get("schedules") or [])
    drops = answer.get("drops") or {}
    if drops:
        lines.append("dropped messages: " + ", ".join(f"{k}={v}" for k, v in
                                                      sorted(drops.items())))
    return "\n".join(lines)


def key_lines(queues: dict[str, QueueStatus]) -> list[str]:
    """The busiest keys of each queue whose jobs have keys (docs/guide/flow-control.md)."""
    rows = [[name, str(k["key"]), str(k.get("running", 0)), str(k.get("ready", 0)),
             str(k["max_running"]) if k.get("max_running") is not None else "-",
             k.get("rate") or "-", k.get("held") or "-"]
            for name, c in queues.items() for k in _busiest(c)]
    if not rows:
        return []
    return ["", *_table(["queue", "busiest keys", "running", "ready", "max_running", "rate",
                         "held by"], rows, left=(0, 1, 6))]


def _busiest(row: QueueStatus) -> list[KeyRow]:
    keys = row.get("keys")
    return (keys.get("busiest") or []) if keys else []


def controls_lines(queues: dict[str, QueueStatus]) -> list[str]:
    """One line per queue with its operator controls (see :func:`controls_summary`)."""
    lines = [f"{name}: {text}" for name, c in queues.items()
             if (text := controls_summary(c))]
    return ["", *lines] if lines else []


def schedule_lines(rows: list[ScheduleRow]) -> list[str]:
    """The schedules, with their next and last runs."""
    if not rows:
        return []
    table = [[r["name"], r["queue"], r["when"], str(r.get("next") or "-"),
              str(r.get("last") or "never"), r["catch_up"]] for r in rows]
    return ["", *_table(["schedule", "queue", "when", "next", "last", "catch_up"], table,
                        left=(0, 1, 2, 3, 4, 5))]


def store_problem(answer: StatusAnswer) -> CkptdError | None:
    """The error of a daemon whose store does not answer (as the client would raise it, so
    that ``status`` exits with the code every other command gets), or None."""
    info = answer.get("daemon")
    store = info.get("store") if info else None
    if answer.get("source") != "daemon" or not store or store.get("available") is not False:
        return None
    code = str(store.get("error_code") or "store")
    error = remote_error(code, f"the daemon's store is unavailable: {store.get('error')}")
    error.exit_code = type(error).exit_code
    return error


def show_status(fetch: Callable[[], StatusAnswer], *, as_json: bool, watch: bool,
                out: TextIO | None = None, interval: float = WATCH_INTERVAL,
                rounds: int | None = None) -> StatusAnswer | None:
    """Print the status once, or (``watch``) redraw it every ``interval`` until Ctrl-C;
    return the last answer (None after Ctrl-C).

    ``fetch`` returns the status answer (from the daemon or the store). With ``as_json`` and
    ``watch`` one compact JSON object is printed per round, for scripts that follow it.
    """
    out = out or sys.stdout
    count = 0
    try:
        while True:
            answer = fetch()
            if as_json and watch:
                out.write(json.dumps(answer, default=str) + "\n")
            elif as_json:
                out.write(json.dumps(answer, indent=2, default=str) + "\n")
            elif watch:
                stamp = time.strftime("%H:%M:%S")
                out.write(f"{CLEAR}ckptd status  {stamp}  (every {interval:g}s, Ctrl-C to "
                          f"stop)\n\n{status_table(answer)}\n")
            else:
                out.write(status_table(answer) + "\n")
            out.flush()
            count += 1
            if not watch or (rounds is not None and count >= rounds):
                return answer
            time.sleep(interval)
    except KeyboardInterrupt:
        if watch:
            out.write("\n")
            return None
        raise
