"""The fast JSON of job files and messages keeps the standard library's strictness."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckptd.codec import decode_job, dumps, dumps_decoded, encode_job, loads
from ckptd.core.errors import MalformedJob

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20)


@given(JSON)
def test_what_goes_out_comes_back_and_reads_with_the_standard_library(value: object) -> None:
    data = dumps(value)
    assert loads(data) == value == json.loads(data)
    assert loads(dumps_decoded(loads(data))) == value  # the same value, written faster


@pytest.mark.parametrize("value", [math.nan, math.inf, {"a": -math.inf}, {1, 2}, b"x",
                                   object(), "\ud800"])
def test_what_json_cannot_hold_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        dumps(value)


@pytest.mark.parametrize("data", [b"NaN", b'{"a": Infinity}', b"1e999", b'"\\ud800"', b"\xff",
                                  b"[" * 5000 + b"]" * 5000, b"{", b""])
def test_what_is_not_strict_json_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        loads(data)


def test_a_job_file_is_one_line_that_jq_reads() -> None:
    job = {"id": "a", "queue": "q", "payload": {"x": [1, 2.5, None]}, "created": "t",
           "attempts": 0, "max_attempts": 3, "rev": 0}
    data = encode_job(job)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == job == decode_job(data, "q", "a")
    with pytest.raises(MalformedJob, match="not valid JSON"):
        decode_job(b"{nope", "q", "a")
    with pytest.raises(MalformedJob, match="missing"):
        decode_job(b'{"id": "a"}', "q", "a")
