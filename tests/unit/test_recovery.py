"""The pure parts of recovery: finding jobs listed in two states, and the report lines."""

from __future__ import annotations

from ckptd.core.states import State
from ckptd.store.recovery import Finding, duplicates

P, C, D, F = State.PENDING, State.CLAIMED, State.DONE, State.FAILED


def test_duplicates_lists_ids_in_more_than_one_state() -> None:
    listing = {P: ["a", "b", "c"], C: ["b", "d"], D: ["c", "b"], F: []}
    assert duplicates(listing) == {"b": [P, C, D], "c": [P, D]}
    assert duplicates({P: ["a"], C: ["b"], D: [], F: []}) == {}
    assert duplicates({P: [], C: [], D: [], F: []}) == {}


def test_finding_line() -> None:
    found = Finding("price", "duplicate", "x", "in pending, claimed; keep claimed")
    assert found.line() == "found    price: duplicate x: in pending, claimed; keep claimed"
    fixed = Finding("price", "leftover", "tmp/x.1.2", "unfinished write, 99s old", True)
    assert fixed.line().startswith("repaired price: leftover tmp/x.1.2")
