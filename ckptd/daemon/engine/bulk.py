"""Operator work too big for one turn of the loop, done a slice per turn.

A retry or purge of 10,000 jobs reads and moves 10,000 files: in one turn that would hold
dispatch for the whole time. Instead each such action is a generator that does one job per
step; :meth:`Slices.run` takes a slice of steps per turn (at most :data:`SLICE` jobs or
:data:`SLICE_SECONDS`), and dispatch runs between two slices. The answer is given once the
last slice's store operations are applied.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ckptd.core.errors import CkptdError
from ckptd.daemon.engine.index import Callback
from ckptd.store.base import Outcome

SLICE = 32  # jobs per turn, at most (each also costs a write and a rename in the commit)
SLICE_SECONDS = 0.002  # and no longer than this per turn reading files


class Tally:
    """The answer of a sliced action: counts the operations it queued and replies once the
    last one is applied and no step is left."""

    def __init__(self, reply: Callable[[dict[str, Any] | CkptdError], None],
                 answer: Callable[[], dict[str, Any]]) -> None:
        self._reply = reply
        self._answer = answer
        self.open = 0  # ops queued, not applied yet
        self.steps_done = False
        self.replied = False

    def track(self, then: Callable[[Outcome], None]) -> Callback:
        """A callback for one queued op: runs ``then``, and replies when it was the last."""
        self.open += 1

        def applied(outcome: Outcome) -> None:
            self.open -= 1
            then(outcome)
            self.maybe_reply()
        return applied

    def finish(self) -> None:
        """Every step has run."""
        self.steps_done = True
        self.maybe_reply()

    def fail(self, error: CkptdError) -> None:
        """Stop with ``error`` (said at once)."""
        self.steps_done = True
        if not self.replied:
            self.replied = True
            self._reply(error)

    def maybe_reply(self) -> None:
        if self.steps_done and self.open == 0 and not self.replied:
            self.replied = True
            self._reply(self._answer())


class Slices:
    """The sliced actions in progress, run a slice per loop turn, oldest first."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._work: deque[tuple[Iterator[None], Tally]] = deque()
        self._clock = clock
        self.slices = 0  # slices run (for tests and the benchmark)

    @property
    def busy(self) -> bool:
        """True while some action has steps left (the loop should not sleep)."""
        return bool(self._work)

    def add(self, steps: Iterator[None], tally: Tally) -> None:
        """Queue an action: ``steps`` does one job per ``next()``."""
        self._work.append((steps, tally))

    def run(self) -> None:
        """Run one slice: steps of the oldest actions until the slice is used up."""
        if not self._work:
            return
        self.slices += 1
        started = self._clock()
        done = 0
        while self._work and done < SLICE:
            steps, tally = self._work[0]
            try:
                next(steps)
            except StopIteration:
                self._work.popleft()
                tally.finish()
                continue
            except CkptdError as exc:
                self._work.popleft()
                tally.fail(exc)
                continue
            done += 1
            if self._clock() - started >= SLICE_SECONDS:
                break
