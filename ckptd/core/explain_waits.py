"""What ``explain`` says about work that waits: what a waiting job waits for and what is
still missing, how its last wait ended, and why a job failed without running."""

from __future__ import annotations

from collections.abc import Mapping

from ckptd.core.json_parts import items, table
from ckptd.core.timefmt import format_duration, time_or_none


def _list(states: dict[str, str], limit: int = 5) -> str:
    items = [f"{ref} ({state})" for ref, state in list(states.items())[:limit]]
    more = f" and {len(states) - limit} more" if len(states) > limit else ""
    return ", ".join(items) + more


def _in(text: object, now: float) -> str:
    at = time_or_none(text)
    if at is None:
        return str(text)
    return f"{text} (in {format_duration(at - now)})" if at > now else \
        f"{text} ({format_duration(now - at)} ago: due now)"


def waiting_sentences(info: Mapping[str, object], job: Mapping[str, object], now: float
                      ) -> list[str]:
    """Sentences for a job in ``waiting/``, from ``show``'s ``waits``."""
    waits = table(info.get("waits"))
    queue, job_id = job.get("queue"), job.get("id")
    if waits.get("error"):
        return [f"Its wait cannot be read: {waits['error']}. Fix the file, or cancel it: "
                f"ckptd cancel {queue} {job_id}."]
    out = []
    since = table(job.get("wait")).get("since")
    history = items(job.get("history"))
    last = table(history[-1] if history else None)
    if last.get("outcome") == "parked":
        out.append(f"Its handler parked after attempt {last.get('attempt')} (since "
                   f"{since}): no worker slot is held; the next attempt resumes from its "
                   "checkpoint.")
    for kind in ("parents", "children"):
        states = {str(r): str(s) for r, s in table(waits.get(kind)).items()}
        if not states:
            continue
        open_refs = items(waits.get("open"))
        open_ = {r: s for r, s in states.items() if r in open_refs}
        ended = {r: s for r, s in states.items() if r not in open_}
        if open_:
            out.append(f"It waits for {len(open_)} of its {len(states)} {kind} to end: "
                       f"{_list(open_)}.")
        else:
            out.append(f"All its {len(states)} {kind} have ended: it goes on at the daemon's "
                       "next turn (no daemon running? start one).")
        if ended:
            out.append(f"Ended so far: {_list(ended)}.")
    if waits.get("parents"):
        rule = waits.get("rule", "fail")
        out.append({"fail": "If a parent fails, it fails too without running "
                            "(on_parent_failure fail).",
                    "run": "It runs whatever its parents' ends (on_parent_failure run).",
                    "ignore": "A failed parent is left out of its parents, and it runs "
                              "(on_parent_failure ignore)."}.get(str(rule), ""))
    for ref in items(waits.get("missing")):
        out.append(f"{ref} is in no state: nothing can end this wait. Cancel the job "
                   f"(ckptd cancel {queue} {job_id}) or fix its after; ckptd fsck reports it.")
    wanted = [str(name) for name in items(waits.get("signals_wanted"))]
    if wanted:
        present = [str(name) for name in items(waits.get("signals_present"))]
        names = " or ".join(wanted)
        out.append(f"It waits for the signal {names}: ckptd signal {queue} {job_id} "
                   f"{wanted[0]} [JSON], or a file {queue}/signals/{job_id}.{wanted[0]}.json."
                   + (f" Signals here already: {', '.join(present)}." if present else ""))
    if waits.get("until"):
        out.append(f"It wakes at {_in(waits['until'], now)}.")
    if waits.get("timeout"):
        out.append(f"Its timeout is {_in(waits['timeout'], now)}: then it wakes with the "
                   "reason timeout.")
    if not out:
        out.append("It waits, but its file says for nothing the daemon can see; a daemon "
                   "lets it go on at its next turn.")
    return out


def woken_sentence(job: Mapping[str, object], now: float) -> list[str]:
    """How a job's last wait ended (its ``woken`` record), and why one failed unrun."""
    out = []
    woken = job.get("woken")
    if isinstance(woken, dict):
        signals = ", ".join(sorted(woken.get("signals") or {}))
        got = f", with the signal(s) {signals}" if signals else ""
        out.append(f"It was woken at {woken.get('at')} (reason: {woken.get('reason')}){got}.")
    error = job.get("last_error")
    if isinstance(error, dict) and error.get("type") == "ParentFailed":
        out.append(f"It never ran: {error.get('message')}.")
    return out
