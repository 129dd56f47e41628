"""What ``explain`` says about a job's queue controls: pause, limits, priority, retention.

From the ``controls`` part of ``show``'s answer (the daemon's view through ``--connect``,
the queue's files and settings on a bare store). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from ckptd.core.timefmt import format_duration, time_or_none


def control_sentences(info: dict[str, Any], job: dict[str, Any], state: str, now: float
                      ) -> list[str]:
    """Sentences about what the queue's controls do to this job."""
    controls = info.get("controls")
    if not isinstance(controls, dict):
        return []
    queue = job.get("queue", "?")
    out: list[str] = []
    priority = job.get("priority")
    if state == "pending":
        paused = controls.get("paused")
        if paused:
            reason = f" ({paused['reason']})" if paused.get("reason") else ""
            since = f" since {paused['since']}" if paused.get("since") else ""
            out.append(f"Its queue is PAUSED{since}{reason}: nothing of it is dispatched "
                       f"until 'ckptd resume {queue}' (or rm <root>/{queue}/paused).")
        limits = controls.get("limits") or {}
        running = limits.get("running")
        if limits.get("max_running") is not None:
            now_running = f"; {running} running now" if running is not None else ""
            full = " (full: it waits for one to end)" if running is not None and \
                running >= limits["max_running"] else ""
            out.append(f"Its queue runs at most {limits['max_running']} job(s) at once"
                       f"{now_running}{full}.")
        if limits.get("rate"):
            out.append(f"Its queue is dispatched at most at {limits['rate']}.")
        mine = controls.get("job") or {}
        level = mine.get("priority", priority if isinstance(priority, int) else 0)
        ahead = mine.get("ahead")
        if level or ahead:
            waiting = f"; {ahead} due job(s) are ahead of it" if ahead is not None else ""
            aging = (controls.get("priorities") or {}).get("aging_s")
            moves = (f", and it moves up one level per {format_duration(aging)} it waits"
                     if aging else "")
            out.append(f"It has priority {level} (lower runs first{moves}){waiting}.")
    elif state in ("done", "failed"):
        keep = controls.get("retention") or {}
        seconds = keep.get(f"keep_{state}_s")
        ended = time_or_none(job.get("finished_at"))
        where = "moved under archive/" if keep.get("archive") else "removed"
        if seconds and ended is not None:
            left = ended + float(seconds) - now
            out.append(f"Retention: it is {where} {format_duration(seconds)} after it ended "
                       f"(keep_{state}), " + (f"in about {format_duration(left)}."
                                              if left > 0 else "at the next sweep."))
        elif keep.get("keep_last") is not None:
            out.append(f"Retention: it is {where} once {keep['keep_last']} newer {state} "
                       "jobs exist (keep_last).")
    unique = controls.get("unique")
    if unique:
        out.append(f"Its id is made from its payload (unique = \"{unique['by']}\", scope "
                   f"{unique['scope']}): the same payload submitted again finds this job"
                   + (" while it is pending or claimed." if unique["scope"] == "open"
                      else " as long as it exists."))
    return out
