"""Work that waits on a real S3 server (SeaweedFS): dependencies, a batch's callback, parks
woken by a signal object put in by hand, through a daemon kill; and two daemons that lead
the parent's and the child's queues (the end is found in the bucket, not in a message)."""

from __future__ import annotations

import json
from typing import Any

from ckptd.client.client import Client
from tests.bucket.helpers import prefix_of
from tests.bucket.test_bucket_daemon import FAST
from tests.helpers import wait_for
from tests.procs import Processes, read_lines
from tests.s3server import SeaweedServer


def ended(server: SeaweedServer, url: str, queue: str, state: str = "done") -> int:
    """How many job files ``<queue>/<state>/`` holds in the bucket."""
    folder = f"{prefix_of(url)}/{queue}/{state}/"
    return sum(1 for key in server.keys(folder) if key.endswith(".json")
               and "/" not in key[len(folder):])


def diamonds(client: Client, n: int) -> None:
    for k in range(n):
        client.submit("top", {"k": k}, id=f"A{k}")
        client.submit("mid", {"k": k}, id=f"B{k}", after=[f"top/A{k}"])
        client.submit("mid", {"k": k}, id=f"C{k}", after=[f"top/A{k}"])
        client.submit("top", {"k": k}, id=f"D{k}", after=[f"mid/B{k}", f"mid/C{k}"])


def joins_after_parents(log: str, n: int) -> bool:
    starts: dict[str, float] = {}
    for line in read_lines(log):
        fields = line.split()
        if fields[0] == "run" and fields[1] in ("top", "mid"):
            starts.setdefault(fields[2], float(fields[4]))
    return all(starts[f"D{k}"] > max(starts[f"B{k}"], starts[f"C{k}"]) for k in range(n))


def test_waits_on_a_bucket_survive_a_kill(procs: Processes, s3_server: SeaweedServer,
                                          tmp_path: Any) -> None:
    url = s3_server.url()
    log = str(tmp_path / "runs.log")
    env = {**s3_server.env(), "TEST_LOG": log}
    daemon = procs.daemon(root=url, env=s3_server.env(), **FAST)
    with daemon.client(timeout=30) as client:
        diamonds(client, 10)
        for k in range(5):
            client.submit("approve", {"signal": "approved"}, id=f"p{k}")
        with client.batch("report", then="report") as batch:
            for k in range(20):
                batch.submit("grow", {"add": 2 if k % 5 == 0 else 0})
    for queue, handler in (("top", "node"), ("mid", "node"), ("approve", "parker"),
                           ("grow", "grower"), ("report", "callback")):
        procs.worker(daemon, queue, f"graph_handlers:{handler}", concurrency=2, env=env)
    wait_for(lambda: ended(s3_server, url, "approve", "waiting") == 5, timeout=60,
             message="the five to park in waiting/")
    daemon.kill()
    daemon.start()
    # A signal put into the bucket by hand (as a person's tool would), and one sent.
    s3_server.client().put_object(Bucket=s3_server.bucket, Body=b'{"by": "hand"}',
                                  Key=f"{prefix_of(url)}/approve/signals/p0.approved.json")
    with daemon.client(timeout=30) as client:
        for k in range(1, 5):
            client.signal("approve", f"p{k}", "approved", {"by": "client"})
    wait_for(lambda: ended(s3_server, url, "approve") == 5 and ended(s3_server, url, "top") == 20
             and ended(s3_server, url, "report") == 1, timeout=120,
             message="parks woken, diamonds and the batch's callback done")
    assert joins_after_parents(log, 10)
    woke = {line.split()[2]: json.loads(line.split()[5]) for line in read_lines(log)
            if line.startswith("woke")}
    assert woke["p0"] == {"approved": {"by": "hand"}}
    [callback] = [line for line in read_lines(log) if line.startswith("callback")]
    assert callback.split()[2] == f"{batch.name}.then" and callback.split()[3] == "28"


def test_the_parents_queue_and_the_childs_have_different_leaders(
        procs: Processes, s3_server: SeaweedServer, tmp_path: Any) -> None:
    url = s3_server.url()
    log = str(tmp_path / "runs.log")
    env = {**s3_server.env(), "TEST_LOG": log}
    a = procs.daemon(root=url, env=s3_server.env(), name="a", **FAST)
    b = procs.daemon(root=url, env=s3_server.env(), name="b", **FAST)
    with Client(a.control, timeout=30) as client:
        client.submit("top", {}, id="seed")  # make the queues exist before the balance
        client.submit("mid", {}, id="seed")
    for d, name in ((a, "a"), (b, "b")):
        assert d.alive(), name
    wait_for(lambda: leaders(a) and len(set(leaders(a).values())) == 2, timeout=60,
             message="the two queues to have two leaders")
    with Client(a.control, timeout=30) as client:
        diamonds(client, 10)
    for queue in ("top", "mid"):
        procs.worker(f"{a.control},{b.control}", queue, "graph_handlers:node", concurrency=2,
                     env=env)
    wait_for(lambda: ended(s3_server, url, "top") == 21, timeout=120,
             message="every diamond done across the two leaders")
    assert joins_after_parents(log, 10)


def leaders(d: Any) -> dict[str, str]:
    with Client(d.control, timeout=5) as client:
        rows = client.status()["queues"]
    return {q: str(rows[q].get("leader")) for q in ("top", "mid") if q in rows
            and rows[q].get("leader")}
