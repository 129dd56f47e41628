"""A deliberately broken daemon for the negative controls of the graph crash tests.

$UNSAFE says what it breaks: ``early-wake`` wakes a waiting job when its first parent ends
(not its last); ``fresh-failure-ids`` gives each on_failure job a new id each time instead
of one derived from the failed job, so a repeat after a crash makes a second one. The crash
tests run against it must find joins that started early, and compensating jobs made twice;
if they did not, they could not catch either.
"""

from __future__ import annotations

import os
import sys

from ckptd.cli.main import main
from ckptd.core import waits
from ckptd.core.ids import new_id

if os.environ.get("UNSAFE") == "early-wake":
    _decide = waits.decide

    def early(wait: waits.Wait, signals: set[str] | frozenset[str], now: float
              ) -> waits.Verdict:
        if wait.after and wait.ended:
            return waits.Verdict("wake", "parents")
        return _decide(wait, signals, now)

    waits.decide = early  # type: ignore[assignment]

if os.environ.get("UNSAFE") == "fresh-failure-ids":
    _child_id = waits.child_id

    def fresh(parent: str, key: str) -> str:
        return _child_id(parent, f"{key}-{new_id()[-8:]}") if key.startswith("failure") \
            else _child_id(parent, key)

    waits.child_id = fresh  # type: ignore[assignment]

if __name__ == "__main__":
    sys.argv[0] = "ckptd"
    main()
