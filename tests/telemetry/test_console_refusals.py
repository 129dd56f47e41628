"""The console refuses what it must: a foreign Host or Origin, a form without its CSRF token,
an action without a login, by a read-only user, or while actions are off; every action
that ran (and every refusal of a logged-in user) is in the audit log."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import wait_for
from tests.procs import Processes, count_files
from tests.telemetry.console_helpers import (
    OPERATOR,
    READER,
    Browser,
    audit_records,
    console_daemon,
)


def test_refusals_and_the_audit_log(procs: Processes, tmp_path: Path) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    with daemon.client() as client:
        job = client.submit("price", {"sku": "A-1"}, max_attempts=1)
    web = Browser(port)
    wait_for(lambda: "price" in web.request("GET", "/").body, timeout=10,
             message="the queue on the page")

    # Host and Origin: a name that is not the console's gets 421, another site's form 403.
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        for path in ("/", "/metrics", f"/job/price/{job}"):
            answer = web.request("GET", path, headers={"Host": host})
            assert answer.status == 421, (host, path, answer.status)
            assert job not in answer.body
    assert web.request("GET", "/", headers={"Host": "localhost:1234"}).status == 200
    assert web.request("GET", "/", headers={"Host": "[::1]:9"}).status == 200
    web.log_in(OPERATOR)
    token = web.csrf("/")
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port + 1}"):
        refused = web.request("POST", "/action", {"action": "pause", "queue": "price",
                                                  "csrf": token}, headers={"Origin": origin})
        assert refused.status == 403, origin
    cross = web.request("POST", "/action", {"action": "pause", "queue": "price",
                                            "csrf": token},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403

    # CSRF: none, or another browser's.
    assert web.act({"action": "pause", "queue": "price"}, csrf=False).status == 403
    other = Browser(port)
    stolen = other.csrf("/")
    assert web.request("POST", "/action", {"action": "pause", "queue": "price",
                                           "csrf": stolen}).status == 403
    assert not (Path(daemon.root) / "price" / "paused").exists()

    # No login, then a read-only user.
    anonymous = Browser(port)
    assert anonymous.act({"action": "pause", "queue": "price"}).status == 401
    reader = Browser(port)
    assert reader.log_in(READER).status == 303
    assert "bob (read-only)" in reader.request("GET", "/").body
    assert reader.act({"action": "pause", "queue": "price"}).status == 403
    assert reader.log_in(("bob", "wrong-password")).status == 401
    assert not (Path(daemon.root) / "price" / "paused").exists()

    # The operator acts: the store changes, and the audit log says who, what, from where.
    assert web.act({"action": "pause", "queue": "price", "reason": "audit"}).status == 303
    assert (Path(daemon.root) / "price" / "paused").read_text().strip() == "audit"
    assert web.act({"action": "resume", "queue": "price"}).status == 303
    assert not (Path(daemon.root) / "price" / "paused").exists()
    wait_for(lambda: count_files(daemon.root, "price", "pending") == 1, timeout=10)
    assert web.act({"action": "cancel", "queue": "price", "id": job}).status == 303
    assert count_files(daemon.root, "price", "pending") == 0
    records = audit_records(daemon.root)
    ran = [(r["user"], r["action"], r["result"]) for r in records
           if not r["result"].startswith("refused")]
    assert ran == [("alice", "pause", "paused price"), ("alice", "resume", "resumed price"),
                   ("alice", "cancel", f"cancelled {job} (it was pending)")]
    assert all(r["client"] == "127.0.0.1" and r["at"] for r in records)
    refused = [(r["user"], r["result"]) for r in records if r["result"].startswith("refused")]
    assert ("bob", "refused: bob is read-only; only an operator may act") in refused
    assert any(user == "alice" and "CSRF" in why for user, why in refused)
    assert "alice" in web.request("GET", "/audit").body


def test_actions_that_are_not_turned_on_are_refused(procs: Processes, tmp_path: Path
                                                    ) -> None:
    daemon, port = console_daemon(procs, tmp_path, actions=False)
    with daemon.client() as client:
        client.submit("price", {"sku": "A-1"})
    web = Browser(port)
    assert web.log_in(OPERATOR).status == 303  # a login works: only acting is off
    assert "read-only" in web.request("GET", "/").body
    answer = web.act({"action": "pause", "queue": "price"})
    assert answer.status == 403 and "console_actions = false" in answer.body
    bearer = web.request("POST", "/action", {"action": "pause", "queue": "price"},
                         headers={"Authorization": f"Bearer {OPERATOR[0]}:{OPERATOR[1]}"})
    assert bearer.status == 403
    assert not (Path(daemon.root) / "price" / "paused").exists()
    assert all(r["result"].startswith("refused") for r in audit_records(daemon.root))


def test_a_token_acts_without_a_form(procs: Processes, tmp_path: Path) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    with daemon.client() as client:
        client.submit("price", {"sku": "A-1"})
    web = Browser(port)
    auth = {"Authorization": f"Bearer {OPERATOR[0]}:{OPERATOR[1]}"}
    answer = web.request("POST", "/action", {"action": "pause", "queue": "price"},
                         headers=auth)
    assert answer.status == 200 and '"ok": true' in answer.body
    assert (Path(daemon.root) / "price" / "paused").exists()
    wrong = {"Authorization": f"Bearer {OPERATOR[0]}:nope"}
    assert web.request("POST", "/action", {"action": "resume", "queue": "price"},
                       headers=wrong).status == 401
    assert [r["via"] for r in audit_records(daemon.root)] == ["token"]
