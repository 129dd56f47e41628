"""The answer types (ckptd.core.answer_types) hold to what a real daemon and a bare store
answer: every key a type requires is there, every key there is one the type names, and
every value has the type's type (nested types too). So the types cannot drift silently from
the code that builds the answers: a key added to an answer without its type fails here."""

# No ``from __future__ import annotations``: ``Small`` below needs its NotRequired seen.
import threading
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, NotRequired, TypedDict, get_args, get_origin, get_type_hints

import pytest

from ckptd import Job
from ckptd.client.answer_shapes import answer_as, has_shape
from ckptd.client.remote_admin import RemoteAdmin
from ckptd.core import answer_types as at
from ckptd.core.errors import ProtocolError
from ckptd.daemon.controls.schedules import store_view
from ckptd.testing import InProcessDaemon

CONFIG = """
[queues.price]
key = "payload.supplier"
fair = true
max_running = 4
rate = "100/s"
keep_done = "7d"

[queues.price.keys]
max_running = 2

[queues.price.keys."supplier-a"]
weight = 3

[queues.digest]
unique_fields = ["customer"]
unique_window = "10m"

[schedules.hourly]
every = "1h"
queue = "report"
"""


def _is_typeddict(kind: object) -> bool:
    return isinstance(kind, type) and typing.is_typeddict(kind)


def problems(value: object, kind: Any, where: str = "answer") -> list[str]:
    """What in ``value`` does not hold to the type ``kind`` (nothing when it holds)."""
    if kind is Any or kind is object:
        return []
    origin = get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        found = [problems(value, option, where) for option in get_args(kind)]
        return [] if any(not f for f in found) else min(found, key=len)
    if kind is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not a float"]
    if kind in (int, str, bool):
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is not a {kind.__name__}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        (item,) = get_args(kind)
        return [p for n, v in enumerate(value) for p in problems(v, item, f"{where}[{n}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not a dict"]
        key_kind, item = get_args(kind)
        return [p for k, v in value.items()
                for p in problems(k, key_kind, f"{where} key") + problems(v, item,
                                                                           f"{where}[{k!r}]")]
    if _is_typeddict(kind):
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not a {kind.__name__}"]
        hints = get_type_hints(kind)
        found = [f"{where}: {kind.__name__} requires {key!r}"
                 for key in sorted(kind.__required_keys__ - value.keys())]
        found += [f"{where}: {kind.__name__} does not name {key!r}"
                  for key in sorted(value.keys() - hints.keys())]
        for key in value.keys() & hints.keys():
            found += problems(value[key], hints[key], f"{where}[{key!r}]")
        return found
    raise AssertionError(f"the test knows no type {kind!r}")


def holds(value: Mapping[str, object], kind: Any) -> None:
    found = problems(value, kind)
    assert not found, "\n".join(found)


@pytest.fixture
def ckpt() -> Iterator[InProcessDaemon]:
    with InProcessDaemon(config_text=CONFIG) as daemon:
        yield daemon


@pytest.fixture
def held() -> Iterator[threading.Event]:
    """Holds a handler until the test ends."""
    event = threading.Event()
    yield event
    event.set()


def _jobs(ckpt: InProcessDaemon, held: threading.Event) -> dict[str, str]:
    """Jobs in every state the answers describe: pending (keyed, with a priority), claimed,
    done, waiting on a parent, in a batch."""
    client = ckpt.client

    def slow(job: Job) -> str:
        held.wait(30)
        return "ok"

    made = {"pending": client.submit("price", {"supplier": "supplier-a"}, priority=-2)}
    made["waiting"] = client.submit("ship", {}, after=[f"price/{made['pending']}"])
    ckpt.worker("claims", slow)
    made["claimed"] = client.submit("claims", {})
    ckpt.wait_for("claims", made["claimed"], "claimed")
    ckpt.worker("quick", lambda job: {"n": 1})
    made["done"] = client.submit("quick", {})
    ckpt.wait_for("quick", made["done"], "done")
    with client.batch("report", then="report") as batch:
        made["batched"] = batch.submit("report", {"n": 1})
    client.submit("digest", {"customer": "c1"})
    return made


def test_a_daemon_answers_as_its_types(ckpt: InProcessDaemon, held: threading.Event) -> None:
    client = ckpt.client
    made = _jobs(ckpt, held)
    remote = RemoteAdmin(client)
    holds(client.pause("price", "supplier down"), at.PauseAnswer)
    holds(client.limit("price", {"max_running": 3}), at.LimitAnswer)
    holds(client.limit("price", {"rate": "5/s"}, key="supplier-a"), at.LimitAnswer)
    status = client.status()
    holds(status, at.StatusAnswer)
    assert {"price", "claims", "quick", "report", "digest", "ship"} <= status["queues"].keys()
    assert status["queues"]["price"]["paused"] is not None
    assert status["queues"]["price"]["keys"] is not None
    assert status["queues"]["report"].get("batches")
    holds(client.resume("price"), at.ResumeAnswer)
    for state in ("pending", "claimed", "done", "waiting", "batched"):
        queue = {"pending": "price", "waiting": "ship", "batched": "report",
                 "done": "quick"}.get(state, "claims")
        show = client.show(queue, made[state])
        holds(show, at.ShowAnswer)
        holds(remote.job_logs(queue, made[state]), at.LogsAnswer)
    assert client.show("claims", made["claimed"]).get("lease") is not None
    assert client.show("price", made["pending"])["controls"].get("job") is not None
    holds(client.graph("ship", made["waiting"]), at.GraphNode)
    holds(client.graph("report", made["batched"]), at.GraphNode)
    holds(client.signal("ship", made["waiting"], "go", {"by": "ana"}), at.SignalAnswer)
    holds(client.ping(), at.PingAnswer)
    holds(client.request("endpoints"), at.EndpointsAnswer)
    assert "submit" in client.request("endpoints"), "a daemon on a local disk offers it"
    holds(client.request("schedules"), at.SchedulesAnswer)
    holds(client.run_schedule("hourly"), at.SubmitAnswer)
    holds(client.wait_many("quick", [made["done"]], timeout=5), at.WaitAnswer)
    holds(client.wait_many("quick", None, timeout=5), at.WaitAnswer)
    sealed = client.batch("report", then="report", name="b2")
    holds(client.request("batch_open", {"queue": "report", "batch": "b2",
                                        "callbacks": {"then": "report"}, "context": None}),
          at.BatchOpened)
    holds(sealed.seal(), at.BatchSealed)


def test_a_store_answers_as_its_types(ckpt: InProcessDaemon, held: threading.Event) -> None:
    made = _jobs(ckpt, held)
    admin = ckpt.admin
    holds(admin.pause("price", "supplier down"), at.PauseAnswer)
    holds(admin.limit("price", {"max_running": 3}), at.LimitAnswer)
    holds(admin.limit("price", {"rate": "5/s"}, key="supplier-a"), at.LimitAnswer)
    status = admin.status()
    holds(status, at.StatusAnswer)
    assert status["queues"]["price"]["paused"] is not None
    holds(admin.resume("price"), at.ResumeAnswer)
    for queue, state in (("price", "pending"), ("claims", "claimed"), ("quick", "done"),
                         ("ship", "waiting"), ("report", "batched")):
        holds(admin.show(queue, made[state]), at.ShowAnswer)
        holds(admin.job_logs(queue, made[state]), at.LogsAnswer)
    holds(admin.graph("ship", made["waiting"]), at.GraphNode)
    holds(admin.graph("report", made["batched"]), at.GraphNode)
    holds(admin.signal("ship", made["waiting"], "go", {"by": "ana"}), at.SignalAnswer)
    rows = store_view(ckpt.settings.schedules, admin.store, ckpt.clock())
    holds({"schedules": rows}, at.SchedulesAnswer)
    assert rows


class Small(TypedDict):
    name: str
    more: NotRequired[int]


def test_no_answer_type_requires_a_key_it_marks_not_required() -> None:
    kinds = [k for k in vars(at).values() if _is_typeddict(k)]
    assert len(kinds) > 30
    for kind in kinds:
        hints = get_type_hints(kind, include_extras=True)
        optional = {k for k, v in hints.items() if get_origin(v) is NotRequired}
        assert not optional & kind.__required_keys__, kind.__name__
    assert at.QueueStatus.__required_keys__ == {"pending", "claimed", "done", "failed",
                                                "waiting"}


def test_an_answer_without_a_required_key_is_refused_by_the_client() -> None:
    assert has_shape({"name": "a"}, Small) and has_shape({"name": "a", "x": 1}, Small)
    answer = {"name": "a"}
    assert answer_as(answer, Small) is answer, "the same dict, not a copy"
    with pytest.raises(ProtocolError, match="lacks name"):
        answer_as({"more": 1}, Small)


def test_the_check_catches_a_key_the_type_does_not_name() -> None:
    assert problems({"name": "a", "extra": 1}, Small) == [
        "answer: Small does not name 'extra'"]
    assert problems({"name": 1}, Small) == ["answer['name']: 1 is not a str"]
