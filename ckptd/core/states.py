"""The state machine: the states, the moves between them, and who wins after a crash.

Pure code, no I/O. The daemon's transaction (:class:`ckptd.daemon.engine.index.Txn`) and the store
commands (:class:`ckptd.store.admin.StoreAdmin`) ask this module whether each move they make
is allowed; the store itself moves what it is told (recovery resolves what a crash left, and
an operator's ``mv`` is honoured as found). Recovery asks it which copy of a job to keep
when a crash (or a copy-then-delete on a bucket) left it in two state folders at once.

    pending -> claimed            a worker was handed the job
    claimed -> done | failed      the worker answered, or attempts ran out
    claimed -> pending            lease lost or attempt failed: retry later
    failed  -> pending            an operator retries the job
    pending -> (removed)          cancel
    done | failed -> (removed)    purge

Work that waits (:mod:`ckptd.core.waits`) has a folder of its own, ``waiting/``:

    (new)   -> waiting            a submit with parents (``after``) is created there
    pending -> waiting            hold: a file put into pending/ names parents not ended
    claimed -> waiting            park: the handler waits (signal, time, children); its
                                  worker slot and lease are freed
    waiting -> pending            wake: what it waited for happened (or its timeout came)
    waiting -> failed             abandon: a parent failed and its rule is ``fail``
    waiting -> (removed)          cancel
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ckptd.core.errors import TransitionError


class State(StrEnum):
    """A job's state; the value is also the name of its folder."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"
    WAITING = "waiting"


STATES: tuple[State, ...] = (State.PENDING, State.CLAIMED, State.DONE, State.FAILED,
                             State.WAITING)
TERMINAL: frozenset[State] = frozenset({State.DONE, State.FAILED})
OPEN: frozenset[State] = frozenset({State.PENDING, State.CLAIMED, State.WAITING})
"""States of a job that has not ended (a wait on it goes on)."""
REMOVED = None
"""Stands for "no state": the job file is deleted (cancel, purge)."""

# (from, to) -> the name of the move, as logged and shown to operators.
TRANSITIONS: dict[tuple[State, State | None], str] = {
    (State.PENDING, State.CLAIMED): "claim",
    (State.CLAIMED, State.DONE): "finish",
    (State.CLAIMED, State.FAILED): "fail",
    (State.CLAIMED, State.PENDING): "release",
    (State.FAILED, State.PENDING): "retry",
    (State.PENDING, REMOVED): "cancel",
    (State.DONE, REMOVED): "purge",
    (State.FAILED, REMOVED): "purge",
    (State.PENDING, State.WAITING): "hold",
    (State.CLAIMED, State.WAITING): "park",
    (State.WAITING, State.PENDING): "wake",
    (State.WAITING, State.FAILED): "abandon",
    (State.WAITING, REMOVED): "cancel",
}

# How far along its life a copy of a job is, for the two-state rule. A wait comes before
# its run: a wake that is a plain copy (a bucket's copy, then delete) keeps ``rev``, and the
# copy in pending/ must win. A park rewrites the file, so its copy in waiting/ wins by rev.
_RANK = {State.WAITING: -1, State.PENDING: 0, State.CLAIMED: 1, State.FAILED: 2,
         State.DONE: 3}


def parse_state(value: str) -> State:
    """Return the State named ``value``; raise ValueError with the choices otherwise."""
    try:
        return State(value)
    except ValueError:
        raise ValueError(
            f"unknown state {value!r}: expected one of {', '.join(s.value for s in STATES)}"
        ) from None


def transition_name(src: State, dst: State | None) -> str:
    """Return the name of the move ``src -> dst``; raise TransitionError if not allowed."""
    try:
        return TRANSITIONS[(src, dst)]
    except KeyError:
        target = dst.value if dst is not None else "removed"
        raise TransitionError(f"a job cannot move from {src.value} to {target}") from None


def other_states(state: State) -> tuple[State, ...]:
    """Every state but ``state``: where a create-only write into ``state`` must look too."""
    return tuple(s for s in STATES if s is not state)


def is_allowed(src: State, dst: State | None) -> bool:
    """Return True when ``src -> dst`` is a move of the state machine."""
    return (src, dst) in TRANSITIONS


@dataclass(frozen=True)
class Copy:
    """One copy of a job as found in one state folder, reduced to what the rule compares."""

    state: State
    rev: int = 0
    attempts: int = 0


def copy_order(copy: Copy) -> tuple[int, int, int]:
    """The sort key of the two-state rule: the greatest key is the copy to keep.

    ``rev`` counts the rewrites of a job file, so a copy written by a later move always
    wins, whichever way the move went (a retry goes back to ``pending``). Copies with the
    same ``rev`` (a bucket's copy-then-delete of an unchanged file, or files copied by hand)
    fall back to the design's rule: the later state wins, then the higher attempt.
    """
    return (copy.rev, _RANK[copy.state], copy.attempts)


def resolve(copies: list[Copy]) -> tuple[Copy, list[Copy]]:
    """Return (winner, losers) for a job found in several state folders.

    Raises ValueError when ``copies`` is empty.
    """
    if not copies:
        raise ValueError("resolve() needs at least one copy")
    ordered = sorted(copies, key=copy_order, reverse=True)
    return ordered[0], ordered[1:]


def tmp_is_stale(age_seconds: float, max_age_seconds: float) -> bool:
    """Return True when a leftover in ``tmp/`` is old enough to be removed.

    A file in ``tmp/`` is a write that never reached its folder (the writer crashed before
    its rename). Young files may still be in flight, so only old ones are removed.
    """
    return age_seconds >= max_age_seconds
