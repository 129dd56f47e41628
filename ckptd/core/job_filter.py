"""Which jobs a search, a bulk action or a replay takes: a filter on the job file.

One filter for the console's search, its bulk actions on "all matching" and ``ckptd
replay``, so that the count a confirm step shows is the count the action takes. Pure: it
looks at ids and decoded job files, never at a store.

- ``where``: payload fields equal to values (``sku=A-1``, ``order.country=NL``; a value
  that reads as JSON is taken as JSON: ``qty=3`` is the number 3, ``rush=true`` a boolean);
- ``error``: the type of the last error (``TimeoutError``), or text in its message;
- ``since`` / ``until``: when the job finished (done and failed jobs) or was created
  (pending and claimed ones), as a time or an age.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ckptd.core.errors import ConfigError
from ckptd.core.ids import id_time
from ckptd.core.jobs import Job
from ckptd.core.timefmt import parse_duration, time_or_none, utc_iso

MAX_WHERE = 8


@dataclass(frozen=True)
class JobFilter:
    """What a job must have to be taken (every part given must hold)."""

    where: tuple[tuple[str, object], ...] = ()
    error: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def empty(self) -> bool:
        """True when it takes every job."""
        return not self.where and not self.error and self.since is None and self.until is None

    @property
    def needs_file(self) -> bool:
        """True when only the job file can tell (the id alone cannot)."""
        return bool(self.where or self.error)

    def describe(self) -> str:
        """The filter as a person would write it (``sku=A-1, error TimeoutError``)."""
        parts = [f"{path}={json.dumps(value) if not isinstance(value, str) else value}"
                 for path, value in self.where]
        if self.error:
            parts.append(f"error {self.error}")
        if self.since is not None:
            parts.append(f"since {_iso(self.since)}")
        if self.until is not None:
            parts.append(f"until {_iso(self.until)}")
        return ", ".join(parts) or "every job"

    def id_may_match(self, job_id: str) -> bool:
        """False when the id alone rules the job out: it was created after ``until`` (a
        job finishes after it is created). Ids not made by ckptd always may match."""
        if self.until is None:
            return True
        created = id_time(job_id)
        return created is None or created.timestamp() <= self.until

    def matches(self, job: Job) -> bool:
        """True when the job file passes every part of the filter."""
        for path, value in self.where:
            found, ok = field_value(job.get("payload"), path)
            if not ok or found != value:
                return False
        if self.error:
            last = job.get("last_error")
            if not isinstance(last, dict):
                return False
            kind, text = str(last.get("type") or ""), str(last.get("message") or "")
            if self.error != kind and self.error.lower() not in text.lower():
                return False
        if self.since is not None or self.until is not None:
            stamp = time_or_none(job.get("finished_at")) or time_or_none(job.get("created"))
            if stamp is None:
                return False
            if self.since is not None and stamp < self.since:
                return False
            if self.until is not None and stamp > self.until:
                return False
        return True


def field_value(payload: object, path: str) -> tuple[object, bool]:
    """The value at a dotted ``path`` of a payload, and whether it is there."""
    node: object = payload
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None, False
    return node, True


def parse_where(items: list[str] | tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    """``field=value`` terms; raise ConfigError for one without ``=`` or with no field."""
    if len(items) > MAX_WHERE:
        raise ConfigError(f"at most {MAX_WHERE} --where terms")
    terms: list[tuple[str, object]] = []
    for item in items:
        path, sep, text = item.partition("=")
        path = path.strip()
        if not sep or not path or any(not p for p in path.split(".")):
            raise ConfigError(f"invalid --where {item!r}: expected FIELD=VALUE, e.g. "
                              "sku=A-1 or order.country=NL")
        terms.append((path, _value(text.strip())))
    return tuple(terms)


def parse_when(text: str | None, now: float, what: str) -> float | None:
    """A time given as an age (``2h``: two hours ago) or an ISO time; None when empty."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    stamp = time_or_none(text)
    if stamp is not None:
        return stamp
    try:
        return now - parse_duration(text, what)
    except ConfigError:
        raise ConfigError(f"invalid {what} {text!r}: expected an age such as 2h or 7d, or a "
                          "time such as 2026-11-27T18:00:00Z") from None


def make_filter(where: list[str] | tuple[str, ...] = (), error: str | None = None,
                since: str | None = None, until: str | None = None, *,
                now: float) -> JobFilter:
    """A filter from what a person typed (the CLI's options, the console's form)."""
    return JobFilter(parse_where(where), (error or "").strip() or None,
                     parse_when(since, now, "since"), parse_when(until, now, "until"))


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _iso(stamp: float) -> str:
    return utc_iso(stamp)[:19] + "Z"
