"""The console's actions, each checked in the store: move, limits, purge, a schedule run
now, bulk purge and cancel with their confirm step, and a replay of all matching into a
sandbox root; every one is in the audit log."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers import wait_for
from tests.procs import Processes, count_files, job_files
from tests.telemetry.console_helpers import OPERATOR, Browser, audit_records, console_daemon


def test_single_actions_change_the_store(procs: Processes, tmp_path: Path) -> None:
    config = tmp_path / "ckptd.toml"
    config.write_text('[schedules.nightly]\nevery = "1h"\nqueue = "reports"\n'
                      'payload = {kind = "nightly"}\n')
    daemon, port = console_daemon(procs, tmp_path, config=str(config))
    with daemon.client() as client:
        waiting = client.submit("price", {"sku": "A-1"}, delay=3600)
    web = Browser(port)
    web.log_in(OPERATOR)

    assert web.act({"action": "move", "queue": "price", "id": waiting,
                    "to": "price-slow"}).status == 303
    assert waiting in job_files(daemon.root, "price-slow", "pending")
    assert waiting not in job_files(daemon.root, "price", "pending")
    moved = job_files(daemon.root, "price-slow", "pending")[waiting]
    assert moved["queue"] == "price-slow" and moved["moves"][0]["by"] == "the console"
    page = web.request("GET", f"/job/price-slow/{waiting}").body
    assert f"moved {waiting} to queue price-slow" in page  # the flash message

    assert web.act({"action": "limit", "queue": "price", "max_running": "3",
                    "rate": "10/s"}).status == 303
    limits = json.loads((Path(daemon.root) / "price" / "limits.json").read_text())
    assert limits["max_running"] == 3 and limits["rate"] == "10/s"
    wait_for(lambda: 'class="tag limited"' in web.request("GET", "/").body, timeout=10,
             message="the queue marked limited")

    assert web.act({"action": "run_schedule", "name": "nightly"}).status == 303
    wait_for(lambda: count_files(daemon.root, "reports", "pending") >= 1, timeout=10,
             message="the schedule's job")
    made = list(job_files(daemon.root, "reports", "pending").values())
    assert any(j["payload"] == {"kind": "nightly"} and ".now-" in j["id"] for j in made)

    bad = web.act({"action": "move", "queue": "price", "id": "no-such", "to": "x"})
    assert bad.status == 303  # back to the page, with the error said
    actions = [(r["action"], r["result"].split(":")[0]) for r in audit_records(daemon.root)]
    assert [a for a, _ in actions] == ["move", "limit", "run_schedule", "move"]
    assert actions[-1][1] == "move failed"


def test_bulk_purge_cancel_and_replay_into_a_sandbox(procs: Processes, tmp_path: Path
                                                     ) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    worker = procs.worker(daemon, "price", "poison")
    with daemon.client() as client:
        done = [client.submit("price", {"sku": f"S-{n % 2}"}) for n in range(10)]
        failed = [client.submit("price", {"poison": True, "sku": f"S-{n % 2}"},
                                max_attempts=1) for n in range(6)]
        client.wait_many("price", done + failed, timeout=60)
        worker.terminate()
        later = [client.submit("later", {"n": n}, delay=3600) for n in range(4)]
    web = Browser(port)
    web.log_in(OPERATOR)
    token = web.csrf("/")

    def bulk(form: dict[str, str]) -> int:
        page = web.request("POST", "/bulk", {**form, "csrf": token})
        assert page.status == 200, page.body
        count = re.search(r'data-count="(\d+)"', page.body)
        assert count, page.body
        answer = web.request("POST", "/bulk", {**form, "csrf": token, "confirm": "yes"})
        assert answer.status == 303
        return int(count.group(1))

    sandbox = tmp_path / "sandbox"
    assert bulk({"action": "replay", "queue": "price", "state": "failed", "where": "sku=S-1",
                 "to_root": str(sandbox)}) == 3
    copies = job_files(str(sandbox), "price", "pending")
    assert len(copies) == 3
    assert {c["replay_of"]["id"] for c in copies.values()} == {
        i for n, i in enumerate(failed) if n % 2}
    assert count_files(daemon.root, "price", "failed") == 6  # the source as it was

    assert bulk({"action": "purge", "queue": "price", "state": "done",
                 "where": "sku=S-0"}) == 5
    assert set(job_files(daemon.root, "price", "done")) == {i for n, i in enumerate(done)
                                                            if n % 2}
    assert bulk({"action": "cancel", "queue": "later", "state": "pending"}) == 4
    assert count_files(daemon.root, "later", "pending") == 0
    results = [r["result"] for r in audit_records(daemon.root)]
    assert results == [f"replayed 3 job(s) of price into {sandbox}",
                       "purged 5 job(s) of price", "cancelled 4 job(s) of later"]
    assert later
