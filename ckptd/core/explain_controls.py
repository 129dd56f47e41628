"""What ``explain`` says about a job's queue controls: pause, limits, keys, priority,
retention, uniqueness.

From the ``controls`` part of ``show``'s answer (the daemon's view through ``--connect``,
the queue's files and settings on a bare store). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from ckptd.core.json_parts import items, number
from ckptd.core.timefmt import format_duration, time_or_none


def control_sentences(info: Mapping[str, object], job: Mapping[str, object], state: str,
                      now: float) -> list[str]:
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
        out += key_sentences(mine.get("key"), job, controls.get("keys"))
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
        out.append(unique_sentence(unique))
    return out


def key_sentences(mine: object, job: Mapping[str, object], keys: object) -> list[str]:
    """What the job's key does to it (``mine``: the daemon's view of the key; without a
    daemon only the key the file names is known)."""
    if not isinstance(mine, dict):
        key = job.get("key")
        return [f"Its key is {key} (limits per key and the fair share apply to it; "
                "through the daemon, explain says what holds it)."] if key else []
    key = mine["key"]
    running, limit, rate = mine.get("running", 0), mine.get("max_running"), mine.get("rate")
    where = f"from {mine.get('source') or 'config'}"
    out = []
    if mine.get("held") == "max_running":
        out.append(f"Its key {key} is at its limit {running} of {limit} (max_running {where})"
                   ": it waits for one of them to end.")
    elif mine.get("held") == "rate":
        out.append(f"Its key {key} is dispatched at most at {rate} ({where}) and waits for "
                   "its next token.")
    else:
        bounds = [f"max_running {limit}" if limit is not None else "",
                  f"rate {rate}" if rate else ""]
        shown = ", ".join(b for b in bounds if b)
        out.append(f"Its key is {key}: {running} running, {mine.get('ready', 0)} ready"
                   + (f" ({shown}, {where})." if shown else "."))
    if mine.get("fair") or (isinstance(keys, dict) and keys.get("fair")):
        weight = mine.get("weight", 1)
        out.append(f"Its queue shares its workers fairly between keys (fair = true): {key} "
                   f"takes {weight} turn{'s' if weight != 1 else ''} in each round.")
    return out


def unique_sentence(unique: Mapping[str, object]) -> str:
    """How the job's id was made (unique, unique_fields, windows, debounce)."""
    what = "its payload" if unique.get("by") == "payload" else \
        "the payload's fields " + ", ".join(map(str, items(unique.get("fields"))))
    setting = f"unique = \"{unique['by']}\"" if unique.get("by") == "payload" \
        else "unique_fields"
    scope = unique.get("scope")
    if scope == "window":
        return (f"Its id is made from {what} and the time window ({setting}, unique_window "
                f"{format_duration(number(unique.get('window_s')))}): one job per "
                "window; a submit in the same window finds this job.")
    if scope == "debounce":
        return (f"Its id is made from {what} ({setting}, debounce "
                f"{format_duration(number(unique.get('debounce_s')))}): while it is "
                "pending, a submit of the same fields replaces its payload and pushes its "
                "start back.")
    return (f"Its id is made from {what} ({setting}, scope {scope}): the same submitted "
            "again finds this job" + (" while it is pending or claimed." if scope == "open"
                                      else " as long as it exists."))
