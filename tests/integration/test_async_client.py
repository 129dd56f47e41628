"""The AsyncClient inside a running asyncio application, and threads sharing one Client,
against a real daemon and worker over loopback ZeroMQ."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

import pytest

from ckptd import AsyncClient
from ckptd.client.client import Client
from tests.procs import Processes, count_files, job_files

TICK = 0.001  # the ticker's sleep: its lateness is how long the loop was kept from it


async def _ticker(stop: asyncio.Event, late: list[float], busy: list[float]) -> None:
    """Sleep a millisecond at a time; note by how much each wake-up came late (wall clock)
    and how much CPU the loop's thread used meanwhile: the time other callbacks kept the
    loop from coming back, without the time the machine gave the process to others."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before, cpu = loop.time(), time.thread_time()
        await asyncio.sleep(TICK)
        late.append(loop.time() - before - TICK)
        busy.append(time.thread_time() - cpu)


def test_an_async_client_submits_waits_and_reads_results(procs: Processes) -> None:
    daemon = procs.daemon()
    procs.worker(daemon, "q", "echo", concurrency=2)

    async def app() -> tuple[list[str], list[str], object]:
        async with AsyncClient(daemon.control, timeout=30) as client:
            one = await client.submit("q", {"n": 1})
            many = await client.submit_many("q", [{"n": n} for n in range(2, 6)])
            states = await asyncio.gather(*(client.wait("q", i, timeout=60)
                                            for i in [one, *many]))
            return [one, *many], list(states), await client.result("q", one)

    ids, states, result = asyncio.run(app())
    assert states == ["done"] * 5
    assert result == {"echo": {"n": 1}, "attempt": 1}
    assert set(job_files(daemon.root, "q", "done")) == set(ids)


def test_an_async_client_submits_after_parents_and_signals(procs: Processes) -> None:
    """Work that waits from asyncio: ``after=`` holds a job in waiting/ until its parent
    ended; ``signal`` and ``graph`` carry the same bodies as the blocking client's."""
    daemon = procs.daemon()

    async def app() -> tuple[str, dict[str, object], dict[str, object]]:
        async with AsyncClient(daemon.control, timeout=30) as client:
            parent = await client.submit("q", {"n": 1}, id="parent")
            child = await client.submit_job("q", {"n": 2}, job_id="child",
                                            after=[f"q/{parent}"])
            signalled = await client.signal("q", "child", "go", {"by": "test"})
            graph = await client.graph("q", "child")
            return child.state, signalled, graph

    state, signalled, graph = asyncio.run(app())
    assert state == "waiting"
    assert signalled["state"] == "waiting"
    assert os.listdir(f"{daemon.root}/q/signals") == ["child.go.json"]
    assert graph["state"] == "waiting" and "q/parent" in str(graph)
    procs.worker(daemon, "q", "echo")
    with Client(daemon.control) as client:
        assert client.wait("q", "child", timeout=60) == "done"


@pytest.mark.slow
def test_the_event_loop_is_never_blocked_while_10000_submits_run(procs: Processes) -> None:
    """10,000 submits, 64 in flight, from an application whose loop also runs a 1 ms
    ticker: the CPU the loop's thread used between two ticks is the longest the loop was
    kept busy (the aim is under 5 ms); the ticker's lateness adds what the machine's
    scheduler took. Both printed; asserted with a margin for loaded machines."""
    daemon = procs.daemon()  # the defaults: fsync batch
    n, in_flight = 10_000, 64

    async def app() -> tuple[list[str], list[float], list[float]]:
        late: list[float] = []
        busy: list[float] = []
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticker(stop, late, busy))
        ids: list[str] = []
        async with AsyncClient(daemon.control, timeout=60) as client:
            left = iter(range(n))

            async def lane() -> None:
                for k in left:
                    ids.append(await client.submit("q", {"k": k}))

            await asyncio.gather(*(lane() for _ in range(in_flight)))
        stop.set()
        await ticker
        return ids, late, busy

    # The objects the test process already holds (a pytest worker that ran hundreds of tests)
    # are frozen out of the collector: a full collection of them (250 ms of CPU was seen)
    # is the host's pause, not the client's. What the client allocates is still collected.
    gc.collect()
    gc.freeze()
    try:
        started = time.monotonic()
        ids, late, busy = asyncio.run(app())
        took = time.monotonic() - started
    finally:
        gc.unfreeze()
    late.sort()
    busy.sort()

    def ms(values: list[float], q: float) -> str:
        return f"{1e3 * values[min(len(values) - 1, int(len(values) * q))]:.2f}"

    print(f"\n{n} submits, {in_flight} in flight, in {took:.1f}s; the loop's ticker ran "
          f"{len(late)} times: busy between ticks (CPU) p50 {ms(busy, 0.5)} ms, p99 "
          f"{ms(busy, 0.99)} ms, max {ms(busy, 1)} ms; late (wall) p50 {ms(late, 0.5)} ms, "
          f"p99 {ms(late, 0.99)} ms, max {ms(late, 1)} ms; load {os.getloadavg()[0]:.1f}")
    assert len(set(ids)) == n
    assert count_files(daemon.root, "q", "pending") == n
    assert len(late) > 100, "the ticker ran all along"
    # 5 ms is the aim; the margin is for machines so loaded that a callback is preempted.
    assert busy[-1] < 0.05, f"the event loop was kept busy for {busy[-1]:.3f}s"


@pytest.mark.parametrize("direct", [False, True], ids=["through the daemon", "direct"])
def test_threads_sharing_one_client_submit(procs: Processes, direct: bool) -> None:
    daemon = procs.daemon()
    made: list[list[str]] = [[] for _ in range(8)]
    with Client(daemon.control, timeout=30, direct=direct) as client:
        def produce(lane: int) -> None:
            for k in range(50):
                made[lane].append(client.submit("q", {"lane": lane, "k": k}))

        threads = [threading.Thread(target=produce, args=(lane,)) for lane in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (client._direct_store("q") is not None) is direct
    ids = [i for lane in made for i in lane]
    pending = job_files(daemon.root, "q", "pending")
    assert len(set(ids)) == 400 and set(ids) == set(pending)
    for lane, lane_ids in enumerate(made):
        assert [pending[i]["payload"] for i in lane_ids] == \
            [{"lane": lane, "k": k} for k in range(50)]
