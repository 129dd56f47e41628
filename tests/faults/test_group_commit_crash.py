"""kill -9 the daemon at the flushing thread's steps (fsync batch, overlapped: its own
thread flushes while the loop stages the next groups) while an AsyncClient has 64 submits in
flight: every submit the client was told "accepted" is a job in the store after the
restart, and submits sent again with the same ids (those whose answer died with the daemon)
make no second job."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from ckptd import AsyncClient
from ckptd.core.errors import CkptdError
from tests.helpers import wait_for
from tests.procs import DaemonProcess, Processes, job_files

HERE = os.path.dirname(os.path.abspath(__file__))
N = 3000


async def _submit(control: str, numbers: list[int], accepted: dict[int, str],
                  in_flight: int = 64) -> None:
    """Submit one job per number (its id made from it), ``in_flight`` at a time; note the
    accepted ones (a lane whose daemon died goes on with the next number)."""
    left = iter(numbers)
    async with AsyncClient(control, timeout=60) as client:
        async def lane() -> None:
            for n in left:
                try:
                    made = await client.submit_job("q", {"n": n}, job_id=f"job-{n}",
                                                   if_exists="return")
                    accepted[n] = made.id
                except CkptdError:
                    pass  # not accepted: may exist or not, never counted

        await asyncio.gather(*(lane() for _ in range(in_flight)))


def _first_life(procs: Processes, crash_at: str, program: list[str] | None = None
                ) -> tuple[DaemonProcess, dict[int, str], dict[str, dict[str, Any]]]:
    """Submit until the daemon kills itself at ``crash_at``; restart it; return it, the
    submits accepted before the kill, and the jobs in the store after the restart."""
    daemon = procs.daemon(env={"CKPTD_CRASH_AT": crash_at}, program=program)
    accepted: dict[int, str] = {}

    async def submit_until_the_kill() -> None:
        producer = asyncio.create_task(_submit(daemon.control, list(range(N)), accepted))
        while daemon.alive() and not producer.done():
            await asyncio.sleep(0.01)
        producer.cancel()
        try:
            await producer
        except asyncio.CancelledError:
            pass

    asyncio.run(submit_until_the_kill())
    wait_for(lambda: not daemon.alive(), timeout=60, message="the daemon to kill itself")
    assert daemon.proc is not None and daemon.proc.returncode == -9, daemon.log()[-2000:]
    assert accepted, "some submits were accepted before the crash"
    daemon.env_extra = {}
    daemon.program = ["-m", "ckptd"]
    daemon.start()
    stored = {**job_files(daemon.root, "q", "pending"), **job_files(daemon.root, "q", "done")}
    return daemon, dict(accepted), stored


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["after_group_flush:7", "after_rename:300"])
def test_no_accepted_submit_is_lost_when_the_daemon_dies_between_flushes(
        procs: Processes, crash_at: str) -> None:
    daemon, first, stored = _first_life(procs, crash_at)
    lost = [n for n, job_id in first.items() if job_id not in stored]
    assert not lost, f"{len(lost)} accepted submits lost: {lost[:5]}"
    existed = sum(1 for n in range(N) if n not in first and f"job-{n}" in stored)
    # The rest, sent again after the restart with the same ids: nothing twice.
    accepted = dict(first)
    asyncio.run(_submit(daemon.control, [n for n in range(N) if n not in first], accepted))
    stored = job_files(daemon.root, "q", "pending")
    payloads = sorted(job["payload"]["n"] for job in stored.values())
    assert set(accepted) == set(range(N))
    assert payloads == list(range(N)), "each job once"
    print(f"\n{crash_at}: {len(first)} accepted before the kill, none lost, none twice "
          f"({existed} existed though their answer had died); tmp/ leftovers "
          f"{len(os.listdir(os.path.join(daemon.root, 'q', 'tmp')))}")


@pytest.mark.slow
def test_the_negative_control_a_daemon_that_answers_before_it_writes_loses_jobs(
        procs: Processes) -> None:
    """The same kill against a daemon that says "accepted" before it writes the job
    (tests/faults/unsafe_daemon.py): the test must find accepted jobs missing."""
    _, first, stored = _first_life(procs, "after_rename:300",
                                   program=[os.path.join(HERE, "unsafe_daemon.py")])
    lost = [n for n, job_id in first.items() if job_id not in stored]
    print(f"\nunsafe daemon: {len(first)} accepted before the kill, {len(lost)} lost")
    assert lost, "the test cannot tell a daemon that acknowledges too early"
