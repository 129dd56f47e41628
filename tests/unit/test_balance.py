"""The balance (daemon/cluster/balance.py): which daemon leads which queue. Pure, so no clock
at all: examples of each rule, then properties over any view (hypothesis). The real-process
tests (tests/bucket/test_multi.py) keep three daemons on a bucket and a kill."""

from __future__ import annotations

import hashlib
import math
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from ckptd.daemon.cluster.balance import assign, may_lead, rank

QUEUES = [f"q{n}" for n in range(12)]


def loads(result: dict[str, str]) -> Counter[str]:
    return Counter(result.values())


def test_queues_spread_evenly_and_every_queue_has_one_leader() -> None:
    result = assign(QUEUES, ["a", "b", "c"])
    assert sorted(result) == sorted(QUEUES)
    assert sorted(loads(result).values()) == [4, 4, 4]


def test_the_answer_depends_on_the_view_only() -> None:
    view = {"holders": {"q1": "b", "q2": "a"}, "prefer": {"q3": "c"}}
    first = assign(QUEUES, ["a", "b", "c"], **view)  # type: ignore[arg-type]
    assert assign(list(reversed(QUEUES)), ["c", "a", "b"], **view) == first  # type: ignore[arg-type]
    assert rank("q1", "a") == int.from_bytes(
        hashlib.blake2b(b"q1\0a", digest_size=8).digest(), "big"), \
        "the same weight in every process (no per-process hash seed)"


def test_a_queue_stays_with_its_leader_while_it_is_within_its_share() -> None:
    holders = {"q0": "c", "q1": "c", "q2": "a"}
    result = assign(QUEUES, ["a", "b", "c"], holders=holders)
    assert all(result[q] == leader for q, leader in holders.items())


def test_a_daemon_that_joins_takes_nothing_from_daemons_within_their_share() -> None:
    before = assign(QUEUES[:6], ["a", "b", "c"])
    after = assign(QUEUES[:6], ["a", "b", "c", "d"], holders=before)
    assert after == before, "six queues over four daemons: a share of two, nobody is over"


def test_a_daemon_over_its_share_lets_its_lowest_ranked_queues_go() -> None:
    holders = dict.fromkeys(QUEUES, "a")  # "a" led everything alone
    result = assign(QUEUES, ["a", "b", "c"], holders=holders)
    kept = {q for q, m in result.items() if m == "a"}
    assert len(kept) == 4
    ranked = sorted(QUEUES, key=lambda q: rank(q, "a"), reverse=True)
    assert kept == set(ranked[:4]), "it keeps the queues it ranks highest"


def test_when_a_daemon_leaves_only_its_queues_move() -> None:
    before = assign(QUEUES, ["a", "b", "c"])
    after = assign(QUEUES, ["a", "b"], holders=before)
    moved = {q for q in QUEUES if before[q] != after[q]}
    assert moved == {q for q in QUEUES if before[q] == "c"}
    assert sorted(loads(after).values()) == [6, 6]


def test_a_pin_wins_while_its_daemon_is_alive() -> None:
    holders = {"q0": "a"}
    result = assign(QUEUES, ["a", "b"], holders=holders, prefer={"q0": "b"})
    assert result["q0"] == "b"
    gone = assign(QUEUES, ["a", "c"], holders=holders, prefer={"q0": "b"})
    assert gone["q0"] == "a", "a pin to a daemon that is not alive is ignored"


def test_a_lead_list_restricts_a_daemon_and_restricted_queues_choose_first() -> None:
    lead = {"a": ["q0", "q1"]}
    result = assign(QUEUES, ["a", "b"], lead=lead)
    assert {q for q, m in result.items() if m == "a"} <= {"q0", "q1"}
    only_a = assign(["x", "y"], ["a", "b"], lead={"a": ["x"], "b": ["y"]})
    assert only_a == {"x": "a", "y": "b"}
    nobody = assign(["z"], ["a"], lead={"a": ["x"]})
    assert nobody == {}, "a queue no daemon may lead is left out"
    assert may_lead("b", "anything", lead) and not may_lead("a", "q5", lead)


def test_no_daemons_lead_nothing() -> None:
    assert assign(QUEUES, []) == {}


names = st.lists(st.sampled_from([f"m{n}" for n in range(6)]), min_size=1, max_size=6,
                 unique=True)
queues = st.lists(st.sampled_from([f"q{n}" for n in range(30)]), max_size=30, unique=True)


@given(queues, names, st.data())
def test_every_queue_has_one_leader_within_the_share(queue_list: list[str],
                                                     members: list[str],
                                                     data: st.DataObject) -> None:
    holders = data.draw(st.dictionaries(st.sampled_from(queue_list) if queue_list
                                        else st.nothing(), st.sampled_from(members + ["gone"])))
    result = assign(queue_list, members, holders=holders)
    assert set(result) == set(queue_list)
    assert set(result.values()) <= set(members)
    share = math.ceil(len(queue_list) / len(members)) if queue_list else 0
    assert all(count <= share for count in loads(result).values())
    # Stability: a live holder within its share keeps every queue it holds.
    held = Counter(m for q, m in holders.items() if m in members)
    for queue, member in holders.items():
        if member in members and held[member] <= share:
            assert result[queue] == member
    assert assign(queue_list, members, holders=result) == result, "a balanced view stays"
