"""A worker's answers while more jobs wait at it: a thread slot goes on with the next job
without ringing the I/O thread for each answer (short jobs cost a wakeup per batch, not per
job), and the I/O thread still sends them within a few milliseconds: no answer is held
back behind the job that runs after it."""

from __future__ import annotations

from pathlib import Path

from tests.integration.worker_helpers import records, wait_for_workers
from tests.procs import Processes, job_files

Q = "batches"


def test_answers_go_out_while_the_next_job_runs(procs: Processes, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    procs.worker(daemon, Q, "pid", prefetch=3, env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        # One slot, three held beside it: while the first sleeps, the other three wait at
        # the worker. The two short ones end while the last one waits, then the last runs.
        first, short1, short2, last = client.submit_many(
            Q, [{"sleep": 0.5}, {"sleep": 0}, {"sleep": 0}, {"sleep": 3.0}])
        client.wait_many(Q, [first, short1, short2], timeout=30)
        assert client.show(Q, last)["state"] == "claimed", \
            "the short jobs' answers were held until the long job after them ended"
        ran = [r[2] for r in records(log, "pid")]
        assert ran == [first, short1, short2, last], "the four ran in one worker, in order"
        assert client.wait(Q, last, timeout=30) == "done"
    done = job_files(daemon.root, Q, "done")
    assert all(done[i]["attempts"] == 1 for i in (first, short1, short2, last))
