"""``ckptd explain``: why a job is where it is, in plain sentences.

Built from what ``show`` returns: the job file, its checkpoint and, through a daemon, the
lease (worker, heartbeats, progress, time left). On a bare store only the file facts are
known, and the sentences say what only the daemon could add. The dashboard's job page shows
the same sentences.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ckptd.core.explain_controls import control_sentences
from ckptd.core.explain_waits import waiting_sentences, woken_sentence
from ckptd.core.json_parts import items, number, table
from ckptd.core.timefmt import format_duration, time_or_none

TRACEBACK_LINES = 6
LOG_LINES = 10  # of a job's own log


def _when(text: object, now: float) -> str:
    """``2026-11-27T19:24:16.123456Z (4m05s ago)``, or ``an unknown time``."""
    at = time_or_none(text)
    if at is None:
        return "an unknown time"
    delta = now - at
    return f"{text} ({format_duration(delta)} ago)" if delta >= 0 else \
        f"{text} (in {format_duration(-delta)})"


def _nth(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ..."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        number % 10, "th")
    return f"{number}{suffix}"


def _ago(seconds: object) -> str:
    return f"{format_duration(number(seconds))} ago"


def _short_json(value: object, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def traceback_head(traceback: str, lines: int = TRACEBACK_LINES) -> list[str]:
    """The first ``lines`` lines of a traceback, and its last line when that was cut off."""
    all_lines = [line for line in traceback.rstrip().splitlines() if line.strip()]
    if len(all_lines) <= lines + 1:
        return all_lines
    return all_lines[:lines] + [f"... ({len(all_lines) - lines - 1} more lines)", all_lines[-1]]


def given_back(job: Mapping[str, object]) -> int:
    """How many of the job's attempts its workers gave back unfinished (a stopping worker):
    they end in the history as "given back" and do not count against ``max_attempts``."""
    return sum(1 for entry in items(job.get("history"))
               if isinstance(entry, dict) and entry.get("outcome") == "given back")


def _given_note(given: int) -> str:
    if not given:
        return ""
    return (f" ({given} more {'was' if given == 1 else 'were'} given back by a stopping worker "
            "and did not count)")


def explain(info: Mapping[str, object], now: float) -> list[str]:
    """Sentences about a job, from ``show``'s answer (with ``lease`` through a daemon).

    Lines that start with spaces continue the sentence before them (traceback lines). The
    answer is read as JSON that may lack or garble any part.
    """
    job = table(info.get("job"))
    state = str(info.get("state"))
    queue, job_id = job.get("queue", "?"), job.get("id", "?")
    if "unreadable" in job:
        return [f"Job {job_id} is in {state}/ but its file cannot be read: {job['unreadable']}.",
                "The daemon moves such a file to quarantine/ with the reason beside it."]
    out = [f"Job {job_id} of queue {queue} is {state.upper()}: {info.get('path')}."]
    if info.get("also_in"):
        also = ", ".join(str(state) for state in items(info["also_in"]))
        out.append(f"A copy is also in {also}/ (a crash between copy "
                   "and delete); the daemon's recovery or 'ckptd fsck --repair' resolves it.")
    created = job.get("created")
    batch = f", in batch {job['batch']}" if job.get("batch") else ""
    out.append(f"It was created at {_when(created, now)}{batch}.")
    # ``attempts`` is the fencing token (it counts given-back attempts too); what counts
    # against the budget is ``attempts`` less those, out of ``max_attempts`` less those.
    given = given_back(job)
    attempts = int(number(job.get("attempts"))) - given
    max_attempts = int(number(job.get("max_attempts"))) - given
    explainer = {"pending": _pending, "claimed": _claimed, "done": _done,
                 "failed": _failed}.get(state)
    if explainer is not None:
        out += explainer(info, job, attempts, max_attempts, now)
    if state == "waiting":
        out += waiting_sentences(info, job, now)
    else:
        out += woken_sentence(job, now)
    waiting = table(info.get("waiting_op"))
    if waiting:
        error = f"; last error: {waiting['error']}" if waiting.get("error") else ""
        out.append(f"The daemon's {waiting.get('op')} of it is waiting for the store: "
                   f"{waiting.get('attempts')} attempt(s) failed over "
                   f"{format_duration(number(waiting.get('waiting_s')))}{error}; next try "
                   f"in {format_duration(number(waiting.get('next_try_s')))}. Nothing is "
                   "lost: the move is kept and retried until the store takes it.")
    out += control_sentences(info, job, state, now)
    history = items(job.get("history"))
    if history:
        out.append("History: " + "; ".join(_history_entry(h) for h in history[-5:])
                   + (f" (and {len(history) - 5} earlier)" if len(history) > 5 else "") + ".")
    out += [f"{note[0].upper()}{note[1:]}." for note in map(str, items(info.get("sealed")))]
    tail = items(info.get("log_tail") or table(job.get("last_error")).get("log_tail"))
    if tail:
        out.append(f"The last lines of its own log (ckptd logs {queue} {job_id}):")
        out += [f"    {line}" for line in tail[-LOG_LINES:]]
    return out


def _history_entry(found: object) -> str:
    entry = table(found)
    worker = f" on {entry['worker']}" if entry.get("worker") else ""
    error = f" ({str(entry['error'])[:80]})" if entry.get("error") else ""
    return f"attempt {entry.get('attempt')} {entry.get('outcome')}{worker}{error}"


def _last_error(job: Mapping[str, object], now: float) -> list[str]:
    error = job.get("last_error")
    if not isinstance(error, Mapping):
        return []
    where = f" on worker {error['worker']}" if error.get("worker") else ""
    out = [f"Last error (attempt {error.get('attempt')}, at {_when(error.get('at'), now)}"
           f"{where}): {_error_text(error)}"]
    traceback = error.get("traceback")
    if isinstance(traceback, str) and traceback.strip():
        out += ["    " + line for line in traceback_head(traceback)]
    return out


def _error_text(error: Mapping[str, object]) -> str:
    kind, message = str(error.get("type") or "Error"), str(error.get("message") or "")
    return message if message.startswith(f"{kind}:") else f"{kind}: {message}"


def _checkpoint(info: Mapping[str, object], now: float, lead: str) -> list[str]:
    record = info.get("checkpoint")
    if not isinstance(record, Mapping):
        return []
    return [f"{lead} saved at {_when(record.get('at'), now)} by attempt "
            f"{record.get('attempt')} (seq {record.get('seq')}): "
            f"{_short_json(record.get('state'), 120)}."]


def _pending(info: Mapping[str, object], job: Mapping[str, object], attempts: int,
             max_attempts: int, now: float) -> list[str]:
    out = []
    given = given_back(job)
    left = max_attempts - attempts
    if attempts >= max_attempts > 0:  # a failed job put back into pending/ by hand
        out.append(f"It has used all {max_attempts} of its attempts{_given_note(given)} and "
                   f"was put back into pending/ by hand: it runs once more (attempt "
                   f"{attempts + given + 1}), and goes to failed/ if that fails too ('ckptd "
                   "retry' gives it fresh attempts instead).")
    elif attempts:
        out.append(f"It has used {attempts} of {max_attempts} attempts; {left} left"
                   f"{_given_note(given)}.")
    else:
        out.append(f"No attempt has run yet; it has {max_attempts} attempt(s)"
                   f"{_given_note(given)}.")
    due = time_or_none(job.get("not_before"))
    if due is not None and due > now:
        why = "its retry" if attempts else "the delay it was submitted with"
        out.append(f"It waits for {why}: next attempt (attempt {attempts + given + 1}) not "
                   f"before {job['not_before']} (in {format_duration(due - now)}).")
    else:
        out.append("It is due now and waits for a worker with a free slot of this queue "
                   "(if none is connected, start one: ckptd worker --queue "
                   f"{job.get('queue')} ...).")
    out += _last_error(job, now)
    out += _checkpoint(info, now, "Its next attempt resumes from the checkpoint")
    return out


def _time_limit(job: Mapping[str, object], lease: object) -> tuple[float | None, str]:
    """How long an attempt of the job may run, and whose limit that is."""
    own = job.get("time_limit")
    if isinstance(own, (int, float)) and not isinstance(own, bool) and own > 0:
        return float(own), "its own"
    queue = table(lease).get("time_limit_s")
    return (number(queue), "its queue's") if queue else (None, "")


def _claimed(info: Mapping[str, object], job: Mapping[str, object], attempts: int,
             max_attempts: int, now: float) -> list[str]:
    given = given_back(job)
    running = attempts + 1
    if given:
        out = [f"Attempt {running + given} is running, the {_nth(running)} of its "
               f"{max_attempts} that count{_given_note(given)}; "
               f"{max(0, max_attempts - running)} attempt(s) left after it."]
    elif running > max_attempts:
        out = [f"Attempt {running} is running, after all {max_attempts} of its attempts were "
               "used (it was put back into pending/ by hand): it goes to failed/ if this one "
               "fails."]
    else:
        out = [f"Attempt {running} of {max_attempts} is running; "
               f"{max(0, max_attempts - running)} attempt(s) left after it."]
    found = info.get("lease")
    limit, whose = _time_limit(job, found)
    lease = table(found)
    if limit:
        out.append(f"It may run for {format_duration(limit)} ({whose} time limit): then its "
                   "handler gets TimeLimit, and is stopped by force a grace period later.")
    if "lease" not in info:
        out.append("The lease (worker, heartbeats, time left) lives in the daemon: add "
                   "--connect to see it.")
    elif not found:
        out.append("The daemon holds no lease for it: it is being moved right now, or the "
                   "file was put in claimed/ by hand (the daemon adopts it at its next start).")
    else:
        worker = lease.get("worker") or "no worker yet (the daemon restarted; the worker "\
            "re-announces it, else the lease runs out)"
        age, length = lease.get("age_s"), lease.get("lease_s")
        out.append(f"Worker {worker} has it since {lease.get('claimed_at')}"
                   + (f" ({format_duration(number(age))} ago)" if age is not None else "") + ".")
        expires = lease.get("expires_in_s")
        if expires is not None and number(expires) < 0:
            out.append(f"Its lease ran out {format_duration(-number(expires))} ago: the daemon "
                       "takes it back now (the attempt ends as expired).")
        elif expires is not None:
            out.append(f"Its lease is {format_duration(number(length))}, renewed by each "
                       f"heartbeat; it runs out in {format_duration(number(expires))} unless "
                       "one comes.")
        if lease.get("heartbeat_age_s") is not None:
            out.append(f"Last heartbeat {_ago(lease['heartbeat_age_s'])} (workers send one "
                       f"every {format_duration(number(lease.get('heartbeat_s')))}).")
        else:
            out.append("No heartbeat yet for this attempt.")
        if lease.get("checkpoint_age_s") is not None:
            out.append(f"Last checkpoint {_ago(lease['checkpoint_age_s'])}.")
        progress = lease.get("progress")
        if isinstance(progress, Mapping):
            total = f"/{progress['total']}" if progress.get("total") is not None else ""
            note = f" ({progress['note']})" if progress.get("note") else ""
            out.append(f"Last progress: {progress.get('done')}{total}{note} at "
                       f"{_when(progress.get('at'), now)}.")
        else:
            out.append("No progress reported.")
    out += _checkpoint(info, now, "Latest checkpoint")
    out += _last_error(job, now)
    return out


def _done(info: Mapping[str, object], job: Mapping[str, object], attempts: int,
          max_attempts: int, now: float) -> list[str]:
    worker = f" by worker {job['worker']}" if job.get("worker") else ""
    given = given_back(job)
    which = f"attempt {attempts + given}, the {_nth(attempts)} of {max_attempts} that count" \
        f"{_given_note(given)}" if given else f"attempt {attempts} of {max_attempts}"
    out = [f"It succeeded on {which}, at {_when(job.get('finished_at'), now)}{worker}."]
    created, finished = time_or_none(job.get("created")), time_or_none(job.get("finished_at"))
    history = items(job.get("history"))
    head = history[0] if history else None
    first = time_or_none(head.get("claimed")) if isinstance(head, Mapping) \
        else time_or_none(job.get("claimed_at"))
    if created is not None and finished is not None:
        cycle = f", cycle time {format_duration(finished - first)} (first claim -> done)" \
            if first is not None else ""
        out.append(f"Lead time {format_duration(finished - created)} (created -> done)"
                   f"{cycle}.")
    if job.get("result_ref"):
        out.append(f"Its result is in {job['result_ref']} (too big to inline).")
    else:
        out.append(f"Result: {_short_json(job.get('result'))}.")
    if attempts > 1:
        out += _last_error(job, now)
    return out


def _failed(info: Mapping[str, object], job: Mapping[str, object], attempts: int,
            max_attempts: int, now: float) -> list[str]:
    error = table(job.get("last_error"))
    kind = error.get("type")
    if kind == "Cancelled":
        by = error.get("by") or "an operator"
        why = f"it was cancelled by {by} at {_when(error.get('at'), now)}, while it ran"
    elif attempts > max_attempts:
        why = (f"it used all {max_attempts} of its attempts, was put back into pending/ by "
               f"hand, and failed again ({attempts} attempts in all)")
    elif attempts >= max_attempts:
        why = f"it used all {max_attempts} attempts{_given_note(given_back(job))}"
    elif kind == "Fail":
        why = "the handler raised Fail (no retry)"
    else:
        why = f"its attempt was not to be retried ({attempts} of {max_attempts} used)"
    out = [f"It failed for good at {_when(job.get('finished_at'), now)}: {why}."]
    out += _last_error(job, now)
    out.append(f"To run it again: ckptd retry {job.get('queue')} {job.get('id')} "
               "(or mv the file back into pending/).")
    return out
