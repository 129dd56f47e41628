"""Queue names and job ids are the only input that becomes a path: none may leave the root."""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptd.core.errors import CkptdError, InvalidName
from ckptd.core.names import (
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    check_job_id,
    check_name,
    check_queue,
    is_valid_name,
)

ROOT = "/srv/ckptd-root"

HOSTILE = [
    pytest.param("", id="empty"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("../x", id="parent"),
    pytest.param("x/..", id="trailing-parent"),
    pytest.param("/abs", id="absolute"),
    pytest.param("a/b", id="separator"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("a\0b", id="nul"),
    pytest.param("\0", id="only-nul"),
    pytest.param("x" * 300, id="300-chars"),
    pytest.param("x" * (MAX_NAME_LENGTH + 1), id="one-too-long"),
    pytest.param(".hidden", id="leading-dot"),
    pytest.param("...", id="dots"),
    pytest.param("c:", id="drive-colon"),
    pytest.param("C:x", id="drive-letter"),
    pytest.param("a:b", id="colon"),
    pytest.param("\u0430", id="cyrillic-a"),
    pytest.param("p\u0430yments", id="cyrillic-inside"),
    pytest.param("\uff0e\uff0e", id="fullwidth-dots"),
    pytest.param("\u2024\u2024", id="one-dot-leaders"),
    pytest.param("a\u2215b", id="division-slash"),
    pytest.param("caf\u00e9", id="accented"),
    pytest.param("a b", id="space"),
    pytest.param(" a", id="leading-space"),
    pytest.param("abc\n", id="trailing-newline"),
    pytest.param("a\tb", id="tab"),
    pytest.param("~", id="tilde"),
    pytest.param("$HOME", id="dollar"),
    pytest.param("*", id="glob"),
    pytest.param(None, id="none"),
    pytest.param(12, id="int"),
    pytest.param(b"abc", id="bytes"),
]

GOOD = ["a", "A", "0", "price", "price-list_2", "a.b", "a..b", "-x", "_x", "x" * MAX_NAME_LENGTH,
        "20261127T192416.123456Z-9f3ac1d27b8e4a10"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: object) -> None:
    assert not is_valid_name(name)
    for check in (check_name, check_queue, check_job_id):
        with pytest.raises(InvalidName):
            check(name)


@pytest.mark.parametrize("name", GOOD)
def test_plain_names_are_accepted(name: str) -> None:
    assert is_valid_name(name)
    assert check_queue(name) == name
    assert check_job_id(name) == name


def test_message_says_what_and_the_rule_on_one_line() -> None:
    with pytest.raises(InvalidName) as info:
        check_queue("../x")
    message = str(info.value)
    assert "queue name" in message and "'../x'" in message and "letters, digits" in message
    assert "\n" not in message
    with pytest.raises(InvalidName) as info:
        check_job_id("y" * 1000)
    assert "job id" in str(info.value)
    assert len(str(info.value)) < 200, "a huge name is shortened in the message"
    assert isinstance(info.value, CkptdError) and info.value.exit_code == 5


def _inside(root: str, *parts: str) -> bool:
    path = os.path.normpath(os.path.join(root, *parts))
    return os.path.commonpath([root, path]) == root and path != root


def _assert_stays_inside(queue: str, name: str) -> None:
    """If both names are accepted, the job path is one plain entry of its state folder."""
    if not (is_valid_name(queue) and is_valid_name(name)):
        return
    folder = os.path.join(ROOT, queue, "pending")
    path = os.path.normpath(os.path.join(folder, name + ".json"))
    assert _inside(ROOT, queue, "pending", name + ".json")
    assert os.path.dirname(path) == folder, (queue, name, path)
    assert os.path.basename(path) == name + ".json"


hostile_alphabet = st.sampled_from(
    list("./\\\0:~ \t\n-_aZ9") + ["\u0430", "\uff0e", "\u2024", "\u2215", "\u00e9", "\U0001f600"]
)


@settings(max_examples=500)
@given(queue=st.text(), name=st.text())
def test_no_accepted_text_escapes_the_root(queue: str, name: str) -> None:
    _assert_stays_inside(queue, name)
    for text in (queue, name):
        if check_ok(text):
            assert text == check_name(text)


def check_ok(text: str) -> bool:
    try:
        check_name(text)
    except InvalidName:
        return False
    return True


@settings(max_examples=500)
@given(queue=st.text(hostile_alphabet, max_size=12), name=st.text(hostile_alphabet, max_size=12))
def test_no_accepted_hostile_mix_escapes_the_root(queue: str, name: str) -> None:
    _assert_stays_inside(queue, name)
    if is_valid_name(name):
        assert not name.startswith(".")
        assert set(name) <= set(string.ascii_letters + string.digits + "._-")


@settings(max_examples=300)
@given(name=st.from_regex(NAME_PATTERN, fullmatch=True))
def test_every_name_of_the_pattern_is_accepted_and_stays_inside(name: str) -> None:
    assert is_valid_name(name), name
    assert 1 <= len(name) <= MAX_NAME_LENGTH
    assert name not in (".", "..") and not name.startswith(".")
    _assert_stays_inside("q", name)
    _assert_stays_inside(name, "job")
