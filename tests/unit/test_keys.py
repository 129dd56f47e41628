"""Flow control by key on a fake clock: keys in names, limits per key, the fair share,
uniqueness windows and debounce (the engine and the memory store; real processes in
tests/integration/test_keys_flow.py)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from ckptd.core.config import QueueSettings
from ckptd.core.errors import CkptdError, ConfigError, InvalidInput
from ckptd.core.job_keys import check_key, key_from_payload, key_name, key_of_name
from ckptd.core.key_settings import KeyLimit, KeySettings, key_limits_of, parse_key_controls
from ckptd.core.queue_controls import parse_rate
from ckptd.core.states import State
from ckptd.core.unique_windows import parse_unique_controls, window_id
from ckptd.daemon.controls.backlog import Backlog
from ckptd.daemon.controls.key_lines import KeyedReady
from ckptd.store.admin import StoreAdmin
from ckptd.store.file_names import pending_name, split_pending_name
from tests.unit.test_engine import Harness


def keyed(**queue: Any) -> dict[str, Any]:
    return {"queues": {"q": QueueSettings(**queue)}}


def run_all(h: Harness, worker: bytes, count: int) -> list[dict[str, Any]]:
    """Dispatch and answer until ``count`` jobs ran; the jobs in the order of their claims."""
    ran: list[dict[str, Any]] = []
    while len(ran) < count:
        jobs = h.dispatch()
        assert jobs, f"nothing to dispatch after {len(ran)}"
        for job in jobs:
            h.answer(worker, "done", {"queue": "q", "id": job["id"], "attempt": 1})
        ran += jobs
    return ran[:count]


def claim_keys(h: Harness, jobs: list[dict[str, Any]]) -> list[str]:
    return [json.loads(h.store.read("q", h.where(j["id"])[-1], j["id"])).get("key", "")
            for j in jobs]


# -- names and keys --------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["supplier-a", "acme corp", "a,b", "ü/ß%", "x" * 64, "a@b.c"])
def test_a_key_round_trips_through_a_file_name(key: str) -> None:
    name = pending_name("order-1", 3, key)
    assert "/" not in name and "," not in key_name(key) and len(name.encode()) <= 255
    assert split_pending_name(name) == ("order-1", 3, key)
    assert split_pending_name(pending_name("order-1", 0, key)) == ("order-1", 0, key)


@pytest.mark.parametrize("name", ["x,k.json", "x,k%7e.json", "x,ka%2.json", "x,k%ff.json",
                                  "x,p0,ka.json", "x,k*.json", "x,k%2A.json"])
def test_names_that_write_a_key_otherwise_are_not_job_files(name: str) -> None:
    assert split_pending_name(name) is None


@pytest.mark.parametrize("bad", ["", "*", "x" * 65, "tab\there", 3, None, "é" * 40])
def test_bad_keys_are_refused_with_the_rule(bad: Any) -> None:
    with pytest.raises(InvalidInput, match="a key is 1-64 printable"):
        check_key(bad)


def test_keys_from_the_payload() -> None:
    assert key_from_payload({"supplier": "a"}, ("supplier",)) == "a"
    assert key_from_payload({"c": {"id": 7}}, ("c", "id")) == "7"
    assert key_from_payload({"other": 1}, ("supplier",)) is None
    with pytest.raises(InvalidInput, match="payload.supplier is list"):
        key_from_payload({"supplier": [1]}, ("supplier",))
    assert key_of_name("acme%20corp") == "acme corp"


def test_config_of_keys_and_its_mistakes() -> None:
    found = parse_key_controls("q", {"key": "payload.supplier", "fair": True, "keys": {
        "max_running": 2, "rate": "10/s", "supplier-a": {"rate": "50/s", "weight": 3}}}, "f")
    assert found["key"] == ("supplier",) and found["fair"] is True
    keys = found["keys"]
    assert keys.every.max_running == 2 and keys.named["supplier-a"].weight == 3
    for table, match in ((({"key": "supplier"}), "path into the payload"),
                         ({"keys": {"max_runing": 2}}, "unknown setting"),
                         ({"keys": {"a": {"weight": 0}}}, "at least 1"),
                         ({"fair": "yes"}, "true or false")):
        with pytest.raises(ConfigError, match=match):
            parse_key_controls("q", table, "f")


def test_a_named_key_beats_every_key_and_the_file_beats_the_config() -> None:
    config = KeySettings(KeyLimit(max_running=2, rate=parse_rate("10/s", "r")),
                         {"a": KeyLimit(rate=parse_rate("50/s", "r"))})
    file = {"*": KeyLimit(max_running=5), "b": KeyLimit(max_running=1)}
    assert key_limits_of(config, "a", None).as_dict()["rate"] == "50/s"
    assert key_limits_of(config, "a", None).max_running == 2
    assert key_limits_of(config, "a", file, "f").max_running == 5  # file's * over config's
    assert key_limits_of(config, "a", file, "f").rate.text == "50/s"  # type: ignore[union-attr]
    assert key_limits_of(config, "b", file, "f").max_running == 1
    assert key_limits_of(config, "c", None).weight == 1


def test_unique_settings_refuse_what_means_nothing() -> None:
    assert parse_unique_controls("q", {"unique_fields": ["a", "b.c"], "unique_window": "10m"},
                                 "f") == {"unique_fields": ("a", "b.c"), "unique_window": 600.0}
    for table, match in (({"unique_window": "1m"}, "needs unique_fields"),
                         ({"unique": "payload", "unique_fields": ["a"]}, "choose one"),
                         ({"unique_fields": ["a"], "unique_window": "1m", "debounce": "1s"},
                          "choose one"),
                         ({"unique_fields": ["a"], "unique_window": "1.5s"}, "whole number"),
                         ({"unique_fields": []}, "list of payload fields"),
                         ({"unique_fields": ["a"], "debounce": "5s", "unique_scope": "open"},
                          "scope of its own")):
        with pytest.raises(ConfigError, match=match):
            parse_unique_controls("q", table, "f")


# -- the engine ------------------------------------------------------------------------------

def test_a_key_is_in_the_job_file_and_its_name() -> None:
    h = Harness(**keyed(key=("supplier",)))
    one = h.submit(payload={"supplier": "acme corp"})
    two = h.submit(payload={"x": 1}, key="given")
    three = h.submit(payload={"x": 1})
    names = set(h.store.pending_names("q"))
    assert {pending_name(one, 0, "acme corp"), pending_name(two, 0, "given"),
            pending_name(three)} == names
    assert not h.store.exists("q", State.PENDING, one)  # not under the plain name
    assert json.loads(h.store.read("q", State.PENDING, one, 0, "acme corp"))["key"] == \
        "acme corp"
    with pytest.raises(CkptdError, match="a key is"):
        h.submit(payload={"supplier": "*"})


def test_max_running_per_key_holds_and_opens_when_one_ends() -> None:
    h = Harness(**keyed(keys=KeySettings(KeyLimit(max_running=2))))
    for n in range(4):
        for key in ("a", "b", "c"):
            h.submit(payload={"n": n}, key=key)
    w = h.hello(slots=20)
    jobs = h.dispatch()
    assert Counter(claim_keys(h, jobs)) == {"a": 2, "b": 2, "c": 2}
    assert h.dispatch() == []
    first_a = next(j for j in jobs if claim_keys(h, [j]) == ["a"])
    h.answer(w, "done", {"queue": "q", "id": first_a["id"], "attempt": 1})
    again = h.dispatch()
    assert claim_keys(h, again) == ["a"]
    index = h.engine.queues["q"]
    assert index.running_keys == {"a": 2, "b": 2, "c": 2}


def test_running_counts_come_back_from_claimed_after_a_restart() -> None:
    h = Harness(**keyed(keys=KeySettings(KeyLimit(max_running=2))))
    for n in range(3):
        h.submit(payload={"n": n}, key="a")
    h.hello(slots=5)
    assert len(h.dispatch()) == 2
    h.engine.recover(h.now)  # a new daemon on the same store
    assert h.engine.queues["q"].running_keys == {"a": 2}
    h.hello(name="w2", slots=5)
    assert h.dispatch() == []  # the adopted two hold the key at its limit


def test_fair_share_takes_keys_in_turn_with_weights() -> None:
    h = Harness(**keyed(fair=True, keys=KeySettings(named={"b": KeyLimit(weight=2)})))
    for n in range(20):
        h.submit(payload={"n": n}, key="a")
    for n in range(4):
        h.submit(payload={"n": n}, key="b")
    h.submit(payload={"n": 0}, key="c")
    w = h.hello(slots=1)
    order = claim_keys(h, run_all(h, w, 12))
    assert order == ["a", "b", "b", "c", "a", "b", "b", "a", "a", "a", "a", "a"]


class _Open:
    """Rules of a fair queue whose keys have no limits."""

    fair, generation, limited = True, 0, False

    def blocked(self, key: str) -> float | None:
        return None

    def weight(self, key: str) -> int:
        return 1


def test_fair_share_takes_to_the_end_and_past_it() -> None:
    ready = KeyedReady(backlog=Backlog())
    for n in range(6):
        ready.note_key(f"j{n}", f"k{n % 2}")
        ready.append(f"j{n}")
    taken = []
    while (job_id := ready.take(0.0, _Open())) is not None:  # the last take finds the last
        taken.append(job_id)                                  # key's lines empty
        ready.forget(job_id)
    assert taken == ["j0", "j1", "j2", "j3", "j4", "j5"]
    assert not ready and not ready.by_key


def test_without_fair_the_queue_order_holds_across_keys_and_priorities() -> None:
    h = Harness(**keyed())
    ids = [h.submit(payload={"n": n}, key=k) for n, k in enumerate("abab")]
    urgent = h.submit(payload={"n": 9}, key="b", priority=-5)
    w = h.hello(slots=1)
    assert [job["id"] for job in run_all(h, w, 5)] == [urgent, *ids]


def test_rate_per_key_on_a_fake_clock() -> None:
    h = Harness(**keyed(keys=KeySettings(KeyLimit(rate=parse_rate("10/s", "r")))))
    for n in range(50):
        for key in ("a", "b"):
            h.submit(payload={"n": n}, key=key)
    w = h.hello(slots=1000)
    claimed: Counter[str] = Counter()
    for _ in range(40):  # two seconds, a turn every 50 ms
        jobs = h.dispatch()
        claimed.update(claim_keys(h, jobs))
        for job in jobs:
            h.answer(w, "done", {"queue": "q", "id": job["id"], "attempt": 1})
        h.tick(0.05)
    assert 19 <= claimed["a"] <= 22 and 19 <= claimed["b"] <= 22
    assert h.engine.index.key_gate.throttled["q"] > 0


def test_limits_of_keys_from_the_file_and_the_limit_request() -> None:
    h = Harness(**keyed())
    for n in range(3):
        h.submit(payload={"n": n}, key="a")
    answer = h.operators.control_request("limit", {"queue": "q", "key": "a",
                                                   "max_running": 1}, h.now)
    assert answer["limits"]["max_running"] == 1
    assert json.loads(h.store.read_control("q", "key_limits.json") or b"") == {
        "a": {"max_running": 1}}
    h.hello(slots=5)
    assert len(h.dispatch()) == 1
    h.operators.control_request("limit", {"queue": "q", "key": "a", "reset": True}, h.now)
    assert h.store.read_control("q", "key_limits.json") is None
    assert len(h.dispatch()) == 2


def test_keyed_listing_after_a_restart_keeps_keys_and_limits() -> None:
    h = Harness(**keyed(keys=KeySettings(KeyLimit(max_running=1))))
    admin = StoreAdmin(h.store, h.settings)
    for n in range(3):
        for key in ("a", "b"):
            admin.submit("q", {"n": n}, key=key)
    admin.submit("q", {"n": 9})
    h.engine.recover(h.now)
    h.hello(slots=10)
    jobs = h.dispatch()
    assert Counter(claim_keys(h, jobs)) == {"a": 1, "b": 1, "": 1}


def test_a_window_makes_one_job_per_window() -> None:
    h = Harness(**keyed(unique_fields=("customer",), unique_window=10.0))
    first = h.submit(payload={"customer": "c1", "n": 1})
    again = h.submit(payload={"customer": "c1", "n": 2})
    other = h.submit(payload={"customer": "c2", "n": 1})
    assert first == again != other
    assert first == window_id(first.split(".")[0], h.now, 10.0)
    h.now += 10
    later = h.submit(payload={"customer": "c1", "n": 3})
    assert later != first and later.endswith("Z")


def test_debounce_rewrites_the_pending_job_and_pushes_it_back() -> None:
    h = Harness(**keyed(unique_fields=("customer",), debounce=1.0))
    first = h.submit(payload={"customer": "c1", "n": 1})
    w = h.hello(slots=1)
    for n in range(2, 6):
        h.tick(0.5)
        assert h.submit(payload={"customer": "c1", "n": n}) == first
        assert h.dispatch() == []  # pushed back each time
        assert h.replies[-1]["debounced"] is True
    h.tick(0.9)
    assert h.dispatch() == []
    h.tick(0.2)
    [job] = h.dispatch()
    assert job["id"] == first and job["payload"] == {"customer": "c1", "n": 5}
    assert h.file(State.CLAIMED, first)["debounced"] == 4
    # Running now: the next submit makes a new job.
    assert h.submit(payload={"customer": "c1", "n": 6}) != first
    h.answer(w, "done", {"queue": "q", "id": first, "attempt": 1})


def test_debounce_and_window_through_the_store_commands() -> None:
    h = Harness(**keyed(unique_fields=("customer",), debounce=30.0))
    admin = StoreAdmin(h.store, h.settings, clock=lambda: h.now)
    one = admin.submit("q", {"customer": "c1", "n": 1})
    two = admin.submit("q", {"customer": "c1", "n": 2})
    assert two.debounced and two.id != one.id
    assert h.store.ids("q", State.PENDING) == [two.id]
    job = json.loads(h.store.read("q", State.PENDING, two.id))
    assert job["payload"]["n"] == 2 and job["debounced"] == 1
    w = Harness(**keyed(unique_fields=("customer",), unique_window=60.0))
    admin = StoreAdmin(w.store, w.settings, clock=lambda: w.now)
    made = admin.submit("q", {"customer": "c1"})
    found = admin.submit("q", {"customer": "c1", "x": 1})
    assert made.created and not found.created and found.id == made.id
