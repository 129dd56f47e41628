"""ckptd.testing: the daemon and workers in the test's process, on a fake clock."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from ckptd import Job, Retry
from ckptd.core.schedule_settings import tick_id
from ckptd.daemon.controls.schedules import next_tick
from ckptd.testing import FakeClock, InProcessDaemon, WaitTimeout


@pytest.fixture
def ckpt() -> Iterator[InProcessDaemon]:
    with InProcessDaemon() as daemon:
        yield daemon


def price(job: Job) -> dict[str, object]:
    return {"sku": job.payload["sku"], "price": 9.5}


def test_a_handler_runs_in_process_and_its_result_is_in_the_job(ckpt: InProcessDaemon) -> None:
    ckpt.worker("prices", price)
    job_id = ckpt.client.submit("prices", {"sku": "A-1"})
    job = ckpt.wait_for("prices", job_id, "done")
    assert job["result"] == {"sku": "A-1", "price": 9.5} and job["attempts"] == 1
    assert os.path.exists(os.path.join(ckpt.root, "prices", "done", f"{job_id}.json"))


def test_a_retry_waits_for_its_backoff_on_the_fake_clock(ckpt: InProcessDaemon) -> None:
    def flaky(job: Job) -> str:
        if job.attempt == 1:
            raise Retry(delay=120)
        return "second time"

    ckpt.worker("q", flaky)
    job_id = ckpt.client.submit("q", {})
    ckpt.wait_for("q", job_id, "pending", attempts=1)
    ckpt.advance(119)
    assert ckpt.state("q", job_id) == "pending", "not before its delay"
    ckpt.advance(1)
    assert ckpt.wait_for("q", job_id, "done")["result"] == "second time"


def test_a_delayed_job_runs_when_the_clock_gets_there(ckpt: InProcessDaemon) -> None:
    ckpt.worker("q", price)
    job_id = ckpt.client.submit("q", {"sku": "B"}, delay=3600)
    ckpt.advance(3599)
    assert ckpt.state("q", job_id) == "pending"
    ckpt.advance(1)
    assert ckpt.state("q", job_id) in ("claimed", "done"), "claimed in the turn at that time"
    ckpt.wait_for("q", job_id, "done")


def test_a_schedule_ticks_when_the_clock_passes_its_time() -> None:
    clock = FakeClock(1_800_000_000.0)  # 2027-01-15 08:00 UTC, on the hour
    config = '[schedules.hourly]\nevery = "1h"\nqueue = "reports"\npayload = {kind = "h"}\n'
    with InProcessDaemon(config_text=config, clock=clock) as ckpt:
        ckpt.worker("reports", lambda job: job.payload["kind"])
        tick = next_tick(ckpt.settings.schedules["hourly"], clock())
        assert tick == clock() + 3600
        ckpt.advance(3599)
        assert ckpt.state("reports", tick_id("hourly", tick)) is None, "no job before its tick"
        ckpt.advance(1)
        job = ckpt.wait_for("reports", tick_id("hourly", tick), "done")
        assert job["result"] == "h"


def test_a_running_job_keeps_its_lease_while_time_passes(ckpt: InProcessDaemon) -> None:
    """The workers here are alive: advancing past the lease does not take their jobs back."""
    started, release = threading.Event(), threading.Event()

    def slow(job: Job) -> str:
        started.set()
        release.wait(30)
        return "finished"

    ckpt.worker("q", slow)
    job_id = ckpt.client.submit("q", {})
    assert started.wait(10)
    ckpt.advance(10 * ckpt.settings.lease)
    assert ckpt.state("q", job_id) == "claimed"
    release.set()
    job = ckpt.wait_for("q", job_id, "done")
    assert job["attempts"] == 1 and job["result"] == "finished"


def test_wait_for_says_at_once_when_the_job_ended_otherwise(ckpt: InProcessDaemon) -> None:
    def broken(job: Job) -> None:
        raise ValueError("no price for this item")

    ckpt.worker("q", broken)
    job_id = ckpt.client.submit("q", {}, max_attempts=1)
    with pytest.raises(WaitTimeout, match="ended failed, not done.*no price for this item"):
        ckpt.wait_for("q", job_id, "done", timeout=30)


def test_wait_for_times_out_naming_what_it_saw(ckpt: InProcessDaemon) -> None:
    job_id = ckpt.client.submit("q", {}, delay=60)
    with pytest.raises(WaitTimeout, match="is not done after 0.2s .state pending.*advance"):
        ckpt.wait_for("q", job_id, "done", timeout=0.2)
    with pytest.raises(ValueError, match="unknown state"):
        ckpt.wait_for("q", job_id, "finished")


def test_two_side_by_side_share_nothing_and_leave_nothing() -> None:
    with InProcessDaemon() as one, InProcessDaemon() as two:
        assert one.endpoint != two.endpoint and one.root != two.root
        one.worker("q", price)
        two.worker("q", price)
        ids = one.client.submit("q", {"sku": "1"}), two.client.submit("q", {"sku": "2"})
        assert one.wait_for("q", ids[0])["result"]["sku"] == "1"
        assert two.wait_for("q", ids[1])["result"]["sku"] == "2"
        roots = one.root, two.root
    assert not any(os.path.exists(root) for root in roots), "the temporary roots are removed"


def test_a_root_of_the_test_s_own_is_kept(tmp_path: os.PathLike[str]) -> None:
    root = os.path.join(str(tmp_path), "store")
    with InProcessDaemon(root) as ckpt:
        job_id = ckpt.client.submit("q", {"n": 1})
    assert os.path.exists(os.path.join(root, "q", "pending", f"{job_id}.json"))


def test_settings_are_the_test_s_not_the_environment_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPTD_LEASE", "999s")
    with InProcessDaemon(lease="30s") as ckpt:
        assert ckpt.settings.lease == 30.0
    with InProcessDaemon() as ckpt:
        assert ckpt.settings.lease == 60.0, "the default, not CKPTD_LEASE"


def test_using_it_unstarted_says_how_to_start_it() -> None:
    idle = InProcessDaemon()
    try:
        with pytest.raises(Exception, match="with block or call start"):
            idle.advance(1)
    finally:
        idle.close()
