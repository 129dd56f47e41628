"""Short processes on a bucket exit cleanly: no abort at the interpreter's finalization.

obstore's threads hand answers back through the event loop, and a process that finalized
while one of them was still on its way back used to abort (SIGABRT) after its work was done
(:mod:`ckptd.store.s3.io_loop`). The loop is now closed in order before finalization: the
unit tests hold the rules of that close, and real ``ckptd --root s3://...`` commands are run
again and again (``bench/short_commands.py`` runs 100 of each and prints the count).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

from ckptd.store.s3.io_loop import IoLoop, acquire_loop, release_loop
from tests.procs import REPO
from tests.s3server import SeaweedServer

RUNS = 15  # of status, and of submit (the benchmark runs 100 of each)


def test_close_waits_for_the_requests_in_flight() -> None:
    io = IoLoop()
    release = threading.Event()

    async def slow() -> str:
        await asyncio.to_thread(release.wait, 10)
        return "answered"

    future = io.submit(slow)
    closer = threading.Thread(target=io.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive() and not future.done(), "close() waits for the request"
    release.set()
    closer.join(10)
    assert future.result() == "answered" and io.quiet() and io.closed
    with pytest.raises(RuntimeError, match="closed"):
        io.submit(slow)
    io.close()  # idempotent


def test_a_foreign_thread_handing_an_answer_back_is_counted() -> None:
    io = IoLoop()
    seen: list[int] = []
    try:
        def hand_back() -> None:  # what obstore's threads do: call_soon_threadsafe
            io.loop.call_soon_threadsafe(lambda: seen.append(len(io.loop.inside)))

        threads = [threading.Thread(target=hand_back) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        io.run(asyncio.sleep, 0)  # the callbacks ran
        # The loop may run a callback while its thread is still inside (the race close()
        # waits out); once every call returned, nobody is counted.
        assert len(seen) == 50 and all(0 <= n <= 50 for n in seen)
        assert not io.loop.inside and io.quiet()
    finally:
        io.close()


def test_the_stores_of_a_process_share_one_loop_closed_with_the_last() -> None:
    first, second = acquire_loop(), acquire_loop()
    assert first is second
    release_loop(first)
    assert not first.closed
    release_loop(second)
    assert first.closed
    third = acquire_loop()
    assert third is not first and not third.closed
    release_loop(third)


@pytest.mark.slow
def test_short_commands_on_a_bucket_never_abort(s3_server: SeaweedServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}
    env.update(AWS_ENDPOINT_URL=s3_server.endpoint, PYTHONFAULTHANDLER="1", PYTHONPATH=REPO)
    ckptd = [sys.executable, "-m", "ckptd", "--root", s3_server.url()]
    failed = []
    for command in (["status"], ["submit", "q", "{}"]):
        for _ in range(RUNS):
            done = subprocess.run([*ckptd, *command], env=env, cwd=REPO, text=True,
                                  capture_output=True, timeout=120)
            if done.returncode != 0 or "Fatal Python error" in done.stderr:
                failed.append((command[0], done.returncode, done.stderr[-500:]))
    print(f"short commands: {len(failed)} of {2 * RUNS} runs did not exit cleanly")
    assert not failed
