"""systemd integration: the notify protocol as a real datagram socket, and the unit files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.procs import Processes

REPO = Path(__file__).resolve().parents[2]


def receive_all(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_ready_status_watchdog_and_stopping_reach_the_notify_socket(procs: Processes,
                                                                    tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        daemon = procs.daemon(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        seen: list[str] = []

        def has(text: str) -> bool:
            seen.extend(receive_all(sock))
            return any(text in m for m in seen)

        wait_for(lambda: has("READY=1"), timeout=20, message="READY=1")
        assert any(f"MAINPID={daemon.proc.pid}" in m for m in seen)  # type: ignore[union-attr]
        wait_for(lambda: has("WATCHDOG=1"), timeout=5, message="a watchdog ping")
        assert any("STATUS=" in m and "queue(s)" in m for m in seen)
        assert daemon.terminate() == 0
        wait_for(lambda: has("STOPPING=1"), timeout=5, message="STOPPING=1")
    finally:
        sock.close()


def test_sighup_reloads_settings_and_says_so(procs: Processes, tmp_path: Path) -> None:
    config = tmp_path / "ckptd.toml"
    config.write_text('lease = "60s"\n')
    daemon = procs.daemon(env={"CKPTD_CONFIG": str(config)})
    with daemon.client() as client:
        assert client.status()["daemon"]["lease_s"] == 60
        config.write_text('lease = "30s"\nwatcher = "watchdog"\n')
        daemon.proc.send_signal(1)  # type: ignore[union-attr]
        wait_for(lambda: "reloaded the settings" in daemon.log(), timeout=10)
        assert "watcher can only change with a restart" in daemon.log()
        assert client.status()["daemon"]["lease_s"] == 30


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed on this machine")
@pytest.mark.parametrize("unit", ["ckptd.service", "ckptd-worker@.service"])
def test_unit_files_pass_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this environment's ckptd.
    ckptd = os.path.join(os.path.dirname(sys.executable), "ckptd")
    text = (REPO / "systemd" / unit).read_text().replace("/opt/ckptd/bin/ckptd", ckptd)
    name = unit.replace("@.", "@price.")
    (tmp_path / name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "Failed to" not in line or "ckptd" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
