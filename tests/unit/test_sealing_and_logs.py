"""Units of encryption at rest (the keyring), jobs' own logs (in the store, and attributed to
jobs in a worker) and hooks (client and worker side), without processes."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest

from ckptd.client.hooks import Hook, Submission, SubmitHooks
from ckptd.codec.crypto import Keyring, clear_field, is_sealed, new_key_line, parse_keys
from ckptd.core.errors import ConfigError, DecryptError
from ckptd.core.outcomes import Fail
from ckptd.store import open_store
from ckptd.store.job_logs import NOTE_ROOM, job_logs
from ckptd.wire.messages import JobMessage
from ckptd.worker import job_logs as capture
from ckptd.worker.around import Around
from ckptd.worker.job import Job

K1, K2 = new_key_line("k1"), new_key_line("k2")


def test_a_sealed_value_opens_only_as_its_kind_and_with_its_key() -> None:
    keys = parse_keys(K1, "test")
    sealed = keys.seal({"card": "4111"}, "payload")
    assert is_sealed(sealed) and sealed["kid"] == "k1" and "4111" not in str(sealed)
    assert keys.open(sealed, "payload") == {"card": "4111"}
    with pytest.raises(DecryptError, match="not the key that sealed it"):
        keys.open(sealed, "result")  # a payload cannot pass for a result
    with pytest.raises(DecryptError, match="not the key that sealed it"):
        keys.open(sealed, "state")
    # ... but a result is the next stage's payload in a pipeline
    assert keys.open(keys.seal([1], "result"), "payload") == [1]
    with pytest.raises(DecryptError, match="not the key that sealed it"):
        parse_keys("k1:" + K2.split(":")[1], "other").open(sealed, "payload")
    with pytest.raises(DecryptError, match=r"key 'k1', which is not among .* \(k2\)"):
        parse_keys(K2, "test").open(sealed, "payload")
    assert keys.open({"plain": 1}, "payload") == {"plain": 1}  # from before encryption


def test_rotation_seals_with_the_first_key_and_opens_with_all() -> None:
    old = parse_keys(K1, "old").seal(42, "state")
    rotated = parse_keys(f"{K2}\n{K1}\n", "rotated")
    assert rotated.open(old, "state") == 42
    assert rotated.seal(42, "state")["kid"] == "k2"
    assert rotated.ids() == ["k2", "k1"]


def test_the_keyed_hash_survives_a_rotation_and_an_hmac_key_overrides_it() -> None:
    first = parse_keys(K1, "a").payload_key({"x": 1})
    assert parse_keys(f"{K2},{K1}", "b").payload_key({"x": 1}) == first  # the last key's
    assert first.startswith("u") and len(first) == 33
    pinned = parse_keys(f"hmac:{K2.split(':')[1]}\n{K1}", "c")
    assert pinned.payload_key({"x": 1}) != first and pinned.ids() == ["k1"]


def test_clear_fields_stay_readable_and_are_authenticated() -> None:
    keys = parse_keys(K1, "test", clear_fields=("key",))
    sealed = keys.seal({"key": "tenant-7", "secret": "s"}, "payload")
    assert clear_field(sealed, "key") == "tenant-7" and "secret" not in str(sealed["clear"])
    assert clear_field({"key": "plain"}, "key") == "plain"
    sealed["clear"]["key"] = "tenant-8"
    with pytest.raises(DecryptError):
        keys.open(sealed, "payload")


@pytest.mark.parametrize("text, message", [  # named ids: K1 is random per process
    ("", "no encryption key"), ("k1", "expected ID:BASE64"), ("k1:???", "not base64"),
    ("k1:AAAA", "has 3 bytes"), (f"{K1}\n{K1}", "appears twice")],
    ids=["empty", "no-colon", "not-base64", "short", "twice"])
def test_bad_key_files_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_keys(text, "keys")


def test_a_keyring_pickles_into_child_processes() -> None:
    keys = parse_keys(K1, "test")
    sealed = keys.seal("x", "result")
    again: Keyring = pickle.loads(pickle.dumps(keys))
    assert again.open(sealed, "result") == "x"


@pytest.mark.parametrize("root", ["local", "memory"])
def test_logs_in_the_store_append_skip_resends_cut_at_the_limit_and_go(
        tmp_path: Any, root: str) -> None:
    store = open_store(str(tmp_path) if root == "local" else f"memory://logs-{id(tmp_path)}")
    logs = job_logs(store)
    assert logs.append("q", "j1", 1, 0, "one\n", 100)
    logs.append("q", "j1", 1, 0, "one\n", 100)  # sent twice: kept once
    assert logs.append("q", "j1", 1, 4, "two\nhalf", 100)
    assert logs.append("q", "j1", 2, 0, "again\n", 100)
    parts = logs.read("q", "j1")
    assert [(p.attempt, p.text) for p in parts] == [(1, "one\ntwo\n"), (2, "again\n")]
    assert [p.text for p in logs.read("q", "j1", {1: 4, 2: 6})] == ["two\n"]
    assert logs.tail("q", "j1") == ["again"]
    assert not logs.append("q", "j1", 3, 100 + NOTE_ROOM, "beyond\n", 100)
    logs.remove("q", ["j1"])
    assert logs.read("q", "j1") == [] and logs.tail("q", "j1") == []


def test_records_are_kept_by_the_job_whose_context_emits_them() -> None:
    import logging

    sent: list[tuple[str, str]] = []

    def send(kind: bytes, body: dict[str, Any]) -> None:
        sent.append((body["id"], body["text"]))

    def one(job_id: str) -> None:
        log, token = capture.begin("q", job_id, 1, send, 10_000)
        logging.getLogger("app").warning("from %s", job_id)
        capture.write(f"job.log of {job_id}")
        capture.end(log, token)

    threads = [threading.Thread(target=one, args=(f"j{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logging.getLogger("app").warning("outside any job")
    by_job: dict[str, str] = {}
    for job_id, text in sent:
        by_job[job_id] = by_job.get(job_id, "") + text
    assert len(by_job) == 8
    for job_id, text in by_job.items():
        assert f"WARNING app: from {job_id}\n" in text and f"INFO job: job.log of {job_id}" in text
        assert text.count("\n") == 2
    assert not capture.write("no job here")


class Calls(Hook):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_submit(self, submission: Submission) -> None:
        submission.meta["seen"] = True

    def before(self, job: Any) -> None:
        self.calls.append(f"before {job.payload}")

    def after(self, job: Any, result: Any) -> None:
        self.calls.append(f"after {result}")

    def on_error(self, job: Any, error: BaseException) -> None:
        self.calls.append(f"on_error {type(error).__name__}")

    def on_retry(self, job: Any, error: BaseException) -> None:
        self.calls.append("on_retry")


class Raising(Hook):
    def on_submit(self, submission: Submission) -> None:
        submission.meta["partial"] = 1
        submission.payload = "replaced"
        raise ValueError("broken hook")

    def before(self, job: Any) -> None:
        raise ValueError("broken hook")


def test_submit_hooks_add_fields_and_a_raising_one_is_undone() -> None:
    hooks = SubmitHooks([Raising(), Calls()])
    sub = hooks.apply("q", {"a": 1}, "id-1")
    assert sub.payload == {"a": 1} and sub.meta == {"seen": True} and hooks.errors == 1
    assert not SubmitHooks([Hook()])  # hooks that do nothing on submit cost nothing


def test_worker_hooks_see_plaintext_and_the_result_is_sealed() -> None:
    keys = parse_keys(K1, "test")
    calls = Calls()
    around = Around([Raising(), calls], keys)
    job = Job("j", "q", 1, keys.seal("p", "payload"), max_attempts=3)
    message = JobMessage(queue="q", id="j", attempt=1)
    result = around.call(lambda j: f"{j.payload}!", job, message)
    assert keys.open(result, "result") == "p!"
    assert calls.calls == ["before p", "after p!"]
    failing = Job("j", "q", 1, "p", max_attempts=3)
    with pytest.raises(ValueError):
        around.call(lambda j: (_ for _ in ()).throw(ValueError("x")), failing, message)
    with pytest.raises(Fail):
        around.call(lambda j: (_ for _ in ()).throw(Fail("no")), Job("j", "q", 1, "p"),
                    message)
    assert calls.calls[2:] == ["before p", "on_error ValueError", "on_retry", "before p",
                               "on_error Fail"]
