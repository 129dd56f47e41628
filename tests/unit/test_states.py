"""The state machine, exhaustively: every move, and every two-copy recovery case.

The two-copy rule (a crash, or a bucket's copy-then-delete, can leave a job in two state
folders; recovery keeps one):

1. the copy with the higher ``rev`` wins (it was written by a later move, whichever way
   the move went: a release or a retry goes back to ``pending``);
2. with equal ``rev``, the later state wins: waiting < pending < claimed < failed < done
   (a wait comes before the run it waits for);
3. with equal ``rev`` and state, the copy with more ``attempts`` wins.

The expectations below are written out from that rule, not derived from the code under test.
"""

from __future__ import annotations

import itertools

import pytest

from ckptd.core.errors import CkptdError, TransitionError
from ckptd.core.states import (
    REMOVED,
    STATES,
    TERMINAL,
    Copy,
    State,
    is_allowed,
    parse_state,
    resolve,
    tmp_is_stale,
    transition_name,
)

P, C, D, F, W = State.PENDING, State.CLAIMED, State.DONE, State.FAILED, State.WAITING

ALLOWED = {
    (P, C): "claim",
    (C, D): "finish",
    (C, F): "fail",
    (C, P): "release",
    (F, P): "retry",
    (P, None): "cancel",
    (D, None): "purge",
    (F, None): "purge",
    (P, W): "hold",
    (C, W): "park",
    (W, P): "wake",
    (W, F): "abandon",
    (W, None): "cancel",
}
EVERY_PAIR = [(src, dst) for src in STATES for dst in (*STATES, REMOVED)]
LATER = [W, P, C, F, D]  # the documented order of "later state", earliest first


def test_the_states_are_the_folders() -> None:
    assert [s.value for s in STATES] == ["pending", "claimed", "done", "failed", "waiting"]
    assert TERMINAL == {D, F}
    assert len(EVERY_PAIR) == 30


@pytest.mark.parametrize(("src", "dst"), list(ALLOWED))
def test_allowed_moves(src: State, dst: State | None) -> None:
    assert is_allowed(src, dst)
    assert transition_name(src, dst) == ALLOWED[(src, dst)]


@pytest.mark.parametrize(("src", "dst"), [p for p in EVERY_PAIR if p not in ALLOWED])
def test_every_other_move_is_refused(src: State, dst: State | None) -> None:
    assert not is_allowed(src, dst)
    with pytest.raises(TransitionError) as info:
        transition_name(src, dst)
    assert src.value in str(info.value)
    assert (dst.value if dst else "removed") in str(info.value)
    assert isinstance(info.value, CkptdError)


def test_refused_moves_include_the_dangerous_ones() -> None:
    for src, dst in [(D, P), (D, C), (F, C), (P, D), (P, F), (C, None), (C, C), (W, C),
                     (W, D), (D, W), (F, W)]:
        assert not is_allowed(src, dst)


def test_parse_state() -> None:
    assert parse_state("failed") is F
    with pytest.raises(ValueError, match="pending, claimed, done, failed"):
        parse_state("finished")


# -- the two-copy rule ---------------------------------------------------------------------


def expected_winner(a: Copy, b: Copy) -> Copy | None:
    """The documented rule, spelt out; None when the copies tie on everything."""
    if a.rev != b.rev:
        return a if a.rev > b.rev else b
    if a.state != b.state:
        return a if LATER.index(a.state) > LATER.index(b.state) else b
    if a.attempts != b.attempts:
        return a if a.attempts > b.attempts else b
    return None


REVS = [(0, 0), (1, 0), (0, 1), (7, 8)]
ATTEMPTS = [(0, 0), (1, 0), (0, 1), (3, 2)]
PAIRS = [
    (Copy(sa, ra, aa), Copy(sb, rb, ab))
    for sa, sb in itertools.product(STATES, STATES)
    for ra, rb in REVS
    for aa, ab in ATTEMPTS
]


@pytest.mark.parametrize(("a", "b"), PAIRS,
                         ids=[f"{a.state}{a.rev}.{a.attempts}-{b.state}{b.rev}.{b.attempts}"
                              for a, b in PAIRS])
def test_two_copies(a: Copy, b: Copy) -> None:
    expected = expected_winner(a, b)
    for order in ([a, b], [b, a]):
        winner, losers = resolve(order)
        assert len(losers) == 1
        assert {winner, losers[0]} == {a, b} or a == b
        if expected is not None:
            assert winner == expected, order


# The cases a real crash produces, named: (found copies, the one to keep).
CRASH_CASES = {
    "bucket claim copied, not yet deleted": ([Copy(P, 0, 0), Copy(C, 0, 0)], C),
    "bucket plain copy of failed back to pending": ([Copy(F, 2, 3), Copy(P, 2, 3)], F),
    "local release rewrote into pending": ([Copy(C, 3, 1), Copy(P, 4, 2)], P),
    "local retry rewrote into pending": ([Copy(F, 5, 3), Copy(P, 6, 3)], P),
    "local finish rewrote into done": ([Copy(C, 2, 0), Copy(D, 3, 1)], D),
    "local fail rewrote into failed": ([Copy(C, 2, 2), Copy(F, 3, 3)], F),
    "hand copy, done and failed": ([Copy(F, 1, 1), Copy(D, 1, 1)], D),
    "same state, more attempts": ([Copy(P, 1, 1), Copy(P, 1, 2)], P),
    "three copies": ([Copy(P, 1, 0), Copy(C, 1, 0), Copy(D, 1, 0)], D),
    "three copies, newest rev in pending": ([Copy(D, 1, 0), Copy(P, 2, 0), Copy(F, 1, 5)], P),
    "bucket wake copied, not yet deleted": ([Copy(W, 0, 0), Copy(P, 0, 0)], P),
    "local park rewrote into waiting": ([Copy(C, 1, 0), Copy(W, 2, 1)], W),
    "local wake rewrote into pending": ([Copy(W, 2, 1), Copy(P, 3, 1)], P),
    "local abandon rewrote into failed": ([Copy(W, 0, 0), Copy(F, 1, 0)], F),
}


@pytest.mark.parametrize("case", list(CRASH_CASES))
def test_crash_cases(case: str) -> None:
    copies, keep = CRASH_CASES[case]
    for order in itertools.permutations(copies):
        winner, losers = resolve(list(order))
        assert winner.state is keep
        assert sorted(losers + [winner], key=repr) == sorted(copies, key=repr)


def test_same_state_more_attempts_wins() -> None:
    winner, _ = resolve([Copy(P, 1, 1), Copy(P, 1, 2)])
    assert winner.attempts == 2


def test_one_copy_wins_alone() -> None:
    assert resolve([Copy(C, 4, 2)]) == (Copy(C, 4, 2), [])


def test_resolve_needs_a_copy() -> None:
    with pytest.raises(ValueError):
        resolve([])


# -- leftovers in tmp/ ---------------------------------------------------------------------


@pytest.mark.parametrize(("age", "max_age", "stale"), [
    (0.0, 3600.0, False),
    (3599.9, 3600.0, False),
    (3600.0, 3600.0, True),
    (90000.0, 3600.0, True),
    (0.0, 0.0, True),
    (-5.0, 10.0, False),  # a file from the future (clock skew) is never stale
])
def test_tmp_is_stale(age: float, max_age: float, stale: bool) -> None:
    assert tmp_is_stale(age, max_age) is stale
