"""The job file: what a valid one holds, and clear refusals of malformed ones."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptd.core import edits, jobs
from ckptd.core.errors import MalformedJob

JOB_ID = "20261127T192416.123456Z-9f3ac1d27b8e4a10"


def valid(**changes: object) -> dict[str, object]:
    job = jobs.new_job("price", JOB_ID, {"sku": "A-1"}, 1_795_000_000.0, max_attempts=3)
    job.update(changes)
    return job


def raw(job: dict[str, object]) -> bytes:
    return json.dumps(job).encode()


def without(field: str) -> dict[str, object]:
    job = valid()
    del job[field]
    return job


def test_new_job_round_trips() -> None:
    job = jobs.new_job("price", JOB_ID, {"sku": "A-1", "name": "caf\u00e9"}, 1_795_000_000.0,
                       max_attempts=3, not_before=1_795_000_060.0, batch="b1", lineage=["x"])
    data = jobs.encode(job)
    assert data.endswith(b"\n") and data.count(b"\n") == 1, "one line, so grep and tail work"
    assert "caf\u00e9".encode() in data, "text stays readable with cat"
    assert jobs.decode(data, "price", JOB_ID) == job
    assert job["attempts"] == 0 and job["rev"] == 0
    assert job["created"] == "2026-11-18T11:06:40.000000Z"
    assert job["not_before"] == "2026-11-18T11:07:40.000000Z"


def test_not_before_in_the_past_is_left_out() -> None:
    job = jobs.new_job("q", "a", None, 100.0, max_attempts=1, not_before=50.0)
    assert "not_before" not in job and "batch" not in job and "lineage" not in job


def test_unknown_keys_are_kept() -> None:
    job = valid(custom={"owner": "team-a"})
    assert jobs.decode(jobs.encode(job))["custom"] == {"owner": "team-a"}


def test_unknown_keys_survive_the_edits() -> None:
    job = jobs.decode(raw(valid(custom=[1, 2], rev=4)))
    edited = edits.finished(job, attempt=1, claimed_at=1.0, now=2.0, worker="w", result=7)
    again = edits.debounced(jobs.decode(raw(valid(custom="old"))), edited)
    assert edited["custom"] == [1, 2] and again["custom"] == [1, 2]


def test_every_key_has_a_type_and_a_word() -> None:
    """The keys the module docstring names (and its example's) are the Job type's."""
    named = set(re.findall(r"``([a-z_]+)``", jobs.__doc__ or "")) - {"cat"}
    assert named | {*jobs.REQUIRED_FIELDS, "payload"} == set(jobs.Job.__annotations__)


def test_payload_ref_instead_of_payload() -> None:
    job = without("payload")
    job["payload_ref"] = f"blobs/{JOB_ID}.payload"
    assert jobs.decode(raw(job))["payload_ref"] == job["payload_ref"]


MALFORMED = [
    pytest.param(b"", "not valid JSON", id="empty"),
    pytest.param(b'{"id": "x", ', "not valid JSON", id="truncated"),
    pytest.param(b"\xff\xfe\x00garbage", "not valid JSON", id="binary"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-nesting"),
    pytest.param(raw(valid())[:-1] + b', "x": NaN}', "NaN", id="nan"),
    pytest.param(b"[1, 2]", "expected a JSON object, found list", id="list"),
    pytest.param(b'"text"', "found str", id="string"),
    pytest.param(b"null", "found NoneType", id="null"),
    pytest.param(raw(without("id")), "missing field(s): id", id="no-id"),
    pytest.param(b"{}", "missing field(s): id, queue, created, attempts, max_attempts",
                 id="nothing"),
    pytest.param(raw(without("payload")), "missing field 'payload'", id="no-payload"),
    pytest.param(raw(valid(id="../etc")), "'id' or 'queue' is not a valid name", id="bad-id"),
    pytest.param(raw(valid(queue="a/b")), "'id' or 'queue' is not a valid name", id="bad-queue"),
    pytest.param(raw(valid(id=7)), "'id' or 'queue' is not a valid name", id="numeric-id"),
    pytest.param(raw(valid(attempts=-1)), "'attempts' must be a non-negative integer",
                 id="negative-attempts"),
    pytest.param(raw(valid(attempts="1")), "'attempts' must be", id="string-attempts"),
    pytest.param(raw(valid(attempts=True)), "'attempts' must be", id="bool-attempts"),
    pytest.param(raw(valid(attempts=1.0)), "'attempts' must be", id="float-attempts"),
    pytest.param(raw(valid(max_attempts=None)), "'max_attempts' must be", id="null-max"),
    pytest.param(raw(valid(rev=-2)), "'rev' must be a non-negative integer", id="negative-rev"),
    pytest.param(raw(valid(rev="3")), "'rev' must be", id="string-rev"),
    pytest.param(raw(valid(created=1234)), "'created' must be an ISO 8601 string",
                 id="numeric-created"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_malformed_files_are_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(MalformedJob) as info:
        jobs.decode(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_file_must_agree_with_where_it_was_found() -> None:
    data = jobs.encode(valid())
    with pytest.raises(MalformedJob, match="file name says id 'other' but the file says"):
        jobs.decode(data, "price", "other")
    with pytest.raises(MalformedJob, match="found in queue 'mail' but the file says 'price'"):
        jobs.decode(data, "mail", JOB_ID)
    assert jobs.decode(data, "price", JOB_ID)["id"] == JOB_ID


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_malformed(data: bytes) -> None:
    try:
        job = jobs.decode(data)
    except MalformedJob:
        return
    assert isinstance(job, dict) and "id" in job


def test_encode_value_refuses_what_json_cannot_hold() -> None:
    assert jobs.encode_value({"a": [1, "b"]}) == b'{"a":[1,"b"]}'
    for bad in ({1, 2}, float("nan"), object()):
        with pytest.raises(ValueError, match="not JSON-serialisable"):
            jobs.encode_value(bad)
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        jobs.encode_value(deep)


def test_bump_and_running_attempt() -> None:
    job = valid(attempts=2)
    assert jobs.running_attempt(job) == 3
    assert jobs.bump(job)["rev"] == 1 and jobs.bump(job)["rev"] == 2
    legacy = without("rev")
    assert jobs.bump(legacy)["rev"] == 1


def test_history_keeps_the_newest() -> None:
    job = valid()
    for n in range(jobs.HISTORY_LIMIT + 5):
        jobs.add_history(job, {"attempt": n})
    assert len(job["history"]) == jobs.HISTORY_LIMIT
    assert job["history"][0]["attempt"] == 5 and job["history"][-1]["attempt"] == 24


def test_error_record_cuts_long_tracebacks() -> None:
    record = jobs.error_record("boom", "ValueError", "x" * 100_000, 2, 0.0, "w1")
    assert record["message"] == "boom" and record["attempt"] == 2 and record["worker"] == "w1"
    assert record["traceback"].startswith("...\n")
    assert len(record["traceback"]) == jobs.TRACEBACK_LIMIT + 4
    short = jobs.error_record("boom", "ValueError", None, 1, 0.0, None)
    assert "traceback" not in short and "worker" not in short
