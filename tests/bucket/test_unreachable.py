"""A bucket that cannot be reached, or does not exist: one clear answer for every command.

Every command on the store itself (``--root``) and every client of a daemon whose bucket
cannot be reached gets the same error: it names the store, says the cause in plain words
and the fix, and exits with the code of the README's table (6: a store error; 3: not found,
for a bucket that does not exist). ``status`` through the daemon and ``doctor`` name it too.
The processes are configured as users do (``AWS_ENDPOINT_URL``), against SeaweedFS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import pytest

from ckptd.cli.exits import NOT_FOUND, PROBLEMS, STORE
from ckptd.core.errors import StoreNotFound, StoreUnavailable
from tests.procs import REPO, Processes, free_port
from tests.s3server import SeaweedServer

Q = "work"
FAST = {"heartbeat": "0.5s", "lease": "5s", "poll_interval": "0.3s", "rescan_interval": "3s",
        "leader_lease": "3s"}
COMMANDS = [["status"], ["submit", Q, "{}"], ["ls", Q], ["fsck"]]
MISSING = "ckptd-no-such-bucket"


def closed_endpoint() -> str:
    """An http:// endpoint on 127.0.0.1 where nothing listens."""
    port = free_port()
    with socket.socket() as sock:  # still free: free_port() just bound and released it
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    return f"http://127.0.0.1:{port}"


def ckptd(*args: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}
    env.update(AWS_ENDPOINT_URL=endpoint, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "ckptd", *args], cwd=REPO, env=env,
                          text=True, capture_output=True, timeout=120)


def test_every_store_command_says_the_store_cannot_be_reached(
        s3_server: SeaweedServer) -> None:
    endpoint = closed_endpoint()
    url = s3_server.url()
    for command in COMMANDS:
        done = ckptd("--root", url, *command, endpoint=endpoint)
        said = done.stderr
        assert done.returncode == STORE, (command, said)
        assert url in said and f"{endpoint} (from AWS_ENDPOINT_URL)" in said, said
        assert "cannot be reached (connection refused" in said, said
        assert "is the S3 server up there, and is the endpoint right?" in said, said
        assert said.count("\n") == 1 and "Traceback" not in said  # one red line


def test_a_missing_bucket_is_the_same_answer_for_every_command(
        s3_server: SeaweedServer) -> None:
    url = f"s3://{MISSING}/jobs"
    for command in COMMANDS:
        done = ckptd("--root", url, *command, endpoint=s3_server.endpoint)
        assert done.returncode == NOT_FOUND, (command, done.stderr)
        assert f"bucket '{MISSING}' does not exist on {s3_server.endpoint}" in done.stderr
        assert f"aws s3 mb s3://{MISSING} --endpoint-url {s3_server.endpoint}" in done.stderr
    # SeaweedFS makes a bucket on a first write; ckptd never writes to a missing bucket
    client = s3_server.client()
    try:
        assert MISSING not in [b["Name"] for b in client.list_buckets()["Buckets"]]
    finally:
        client.close()


def through_daemon(procs: Processes, url: str, endpoint: str) -> tuple[Any, list[str]]:
    env = {"AWS_ENDPOINT_URL": endpoint}
    daemon = procs.daemon(root=url, env=env, **FAST)
    return daemon, ["--connect", daemon.control]


@pytest.mark.slow
def test_clients_of_a_daemon_that_cannot_reach_its_bucket_are_told_why(
        procs: Processes, s3_server: SeaweedServer) -> None:
    endpoint = closed_endpoint()
    url = s3_server.url()
    daemon, connect = through_daemon(procs, url, endpoint)
    submitted = ckptd(*connect, "submit", Q, "{}", endpoint=endpoint)
    assert submitted.returncode == STORE, submitted.stderr
    assert "taking" not in submitted.stderr and "ask again" not in submitted.stderr
    assert url in submitted.stderr and "connection refused" in submitted.stderr
    client = daemon.client(timeout=10)
    try:
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            client.submit(Q, {"n": 1})
    finally:
        client.close()
    status = ckptd(*connect, "status", endpoint=endpoint)
    assert status.returncode == STORE, status.stderr
    assert "STORE UNAVAILABLE" in status.stdout and "connection refused" in status.stdout
    doctor = ckptd("doctor", "--root", url, *connect, endpoint=endpoint)
    assert doctor.returncode == PROBLEMS, doctor.stdout + doctor.stderr
    found = doctor.stdout + doctor.stderr
    assert f"{endpoint} (from AWS_ENDPOINT_URL)" in found
    assert "the daemon's store" in found and "connection refused" in found


@pytest.mark.slow
def test_clients_of_a_daemon_on_a_missing_bucket_are_told_so(
        procs: Processes, s3_server: SeaweedServer) -> None:
    daemon, connect = through_daemon(procs, f"s3://{MISSING}/jobs", s3_server.endpoint)
    submitted = ckptd(*connect, "submit", Q, "{}", endpoint=s3_server.endpoint)
    assert submitted.returncode == NOT_FOUND, submitted.stderr
    assert f"bucket '{MISSING}' does not exist" in submitted.stderr
    client = daemon.client(timeout=10)
    try:
        with pytest.raises(StoreNotFound):
            client.submit(Q, {"n": 1})
    finally:
        client.close()
