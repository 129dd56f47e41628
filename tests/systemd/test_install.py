"""docs/guide/systemd.md's install steps, run as written under a real systemd.

A container boots this machine's own systemd (``systemd-nspawn --boot`` of the host's root
filesystem under a throw-away overlay, with a private network, so that its 127.0.0.1:5550 is
its own): the service runs as systemd runs it (a dynamic user: an unused uid with no
supplementary groups), with the files as the install leaves them, and the unit's own
``ExecStart``. :mod:`tests.systemd.driver` runs the guide's blocks in it (the daemon's
install, a worker's, the CURVE steps), a job through the worker unit, a reload, a restart
and a stop, and writes what it saw; this test checks it.

pip in the container installs from a wheelhouse made here first (the container has no
network); the commands are the guide's text. It needs root, ``systemd-nspawn`` (Debian:
``systemd-container``), overlayfs and a Python 3.11+ with venv at /usr/bin/python3; CI has
them (``.ci/run`` installs what is missing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.wheelhouse import wheelhouse

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guide" / "systemd.md"
BOOT_TIMEOUT = 1500.0  # the whole run in the container: two pip installs on a loaded machine
IGNORED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build",
                                 ".pytest_cache", ".mypy_cache", ".ruff_cache", ".demo", ".notes")

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    """Why a real systemd cannot be booted here, or None when it can."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "booting systemd in a container needs root on Linux"
    for tool in ("systemd-nspawn", "systemd-analyze"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install systemd-container)"
    if not any(os.path.exists(p) for p in ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")):
        return "no systemd in this machine's root filesystem to boot"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs"
    version = subprocess.run(["/usr/bin/python3", "-c", "import sys, venv, ensurepip; "
                              "print(sys.version_info >= (3, 11))"],
                             capture_output=True, text=True)
    if version.stdout.strip() != "True":
        return "/usr/bin/python3 is not a Python 3.11+ with venv (apt-get install python3-venv)"
    return None


def blocks(path: Path, heading: str) -> list[list[str]]:
    """The command lines of the ``text`` blocks under ``## heading`` of a guide page."""
    text = path.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = []
    for match in re.finditer(r"^```text\n(.*?)^```", section, re.M | re.S):
        found.append([line for line in match.group(1).splitlines() if line.strip()])
    return found


def handler_module() -> str:
    """The README's handler module, ``tasks.py``, wherever the documentation keeps it."""
    for page in [REPO / "README.md", *sorted((REPO / "docs" / "guide").glob("*.md"))]:
        match = re.search(r"^```python\n(# tasks\.py\n.*?)^```", page.read_text(), re.M | re.S)
        if match:
            return match.group(1)
    raise AssertionError("no '# tasks.py' handler block in the README or docs/guide")


@pytest.fixture
def container() -> Iterator[Path]:
    """A throw-away overlay of this machine's root filesystem; yields its merged root."""
    why = _missing()
    if why is not None:
        pytest.skip(why)
    base = Path(tempfile.mkdtemp(prefix="ckptd-systemd-", dir="/dev/shm"
                                 if os.path.isdir("/dev/shm") else None))
    upper, work, root = base / "upper", base / "work", base / "root"
    for folder in (upper, work, root):
        folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                              f"lowerdir=/,upperdir={upper},workdir={work}", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"cannot mount an overlay of / here: {mounted.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "--lazy", str(root)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def boot(root: Path, wheels: Path, log: Path) -> int:
    """Boot the container's systemd into the test's target; return its exit code."""
    name = f"ckptd-test-{os.getpid()}"
    propagate = Path("/run/systemd/nspawn/propagate") / name
    args = ["systemd-nspawn", "--quiet", "--directory", str(root), "--machine", name,
            "--boot", "--register=no", "--keep-unit", "--link-journal=no",
            "--private-network", f"--bind-ro={wheels}:/root/wheelhouse",
            "--", "systemd.unit=ckptd-test.target"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to stop
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
            raise AssertionError(f"the container ran longer than {BOOT_TIMEOUT:g}s") from None
        finally:
            shutil.rmtree(propagate, ignore_errors=True)  # what nspawn may leave on the host


def prepare(root: Path) -> None:
    """The checkout, the steps, the driver and the units that run it, in the container."""
    home = root / "root"
    shutil.copytree(REPO, home / "ckptd-src", ignore=IGNORED, symlinks=True)
    daemon, _check, curve, worker = (blocks(GUIDE, "Install the daemon")
                                     + blocks(GUIDE, "CURVE keys under systemd")
                                     + blocks(GUIDE, "Workers"))
    (home / "steps.json").write_text(json.dumps({
        "daemon": daemon, "curve": curve, "worker": worker, "tasks_py": handler_module()}))
    shutil.copy(Path(__file__).with_name("driver.py"), home / "driver.py")
    units = root / "etc" / "systemd" / "system"
    (units / "ckptd-test.target").write_text(
        "[Unit]\nDescription=ckptd's systemd test\nRequires=basic.target ckptd-test.service\n"
        "After=basic.target\n")
    (units / "ckptd-test.service").write_text(
        "[Unit]\nDescription=runs docs/guide/systemd.md\nAfter=basic.target\n"
        "FailureAction=exit-force\n[Service]\nType=oneshot\n"
        "ExecStart=/usr/bin/python3 /root/driver.py\nStandardOutput=append:/root/driver.log\n"
        "StandardError=append:/root/driver.log\nTimeoutStartSec=infinity\n")


def test_the_guide_s_install_gives_a_working_service(container: Path, tmp_path: Path) -> None:
    wheels = wheelhouse()
    prepare(container)
    boot(container, wheels, tmp_path / "boot.log")
    results_file = container / "root" / "results.json"
    assert results_file.exists(), (tmp_path / "boot.log").read_text()[-5000:]
    results: dict[str, Any] = json.loads(results_file.read_text())
    report = json.dumps({k: v for k, v in results.items() if k != "steps"}, indent=1)[:8000]
    failed = [s for s in results["steps"] if s["code"] != 0 and s["name"] not in (
        "the service user reads /etc/ckptd/ckptd.toml", "status without keys")]
    assert not results.get("error") and not failed, \
        f"{results.get('error')}\n{json.dumps(failed, indent=1)[:6000]}\n{report}"
    # (nspawn's own exit code is not checked: where the host's /run is not a tmpfs it
    # fails to clean up after a container that exited well, with 255.)
    assert results.get("finished"), (tmp_path / "boot.log").read_text(errors="replace")[-4000:]
    # The daemon: a dynamic user, no groups, no capabilities; its files as installed.
    proc = results["daemon_process"]
    uid = int(proc["Uid"][0])
    assert results["daemon_state"] == "active" and 61184 <= uid <= 65519, report
    # Its only group is its own (the kernel lists it among the supplementary ones).
    assert set(proc["Groups"]) <= {str(uid)} and proc["Gid"][0] == str(uid), report
    assert proc["passwd"] == "0" and set(proc["CapEff"]) == {"0000000000000000"}, report
    assert results["config_file"] == {"mode": "0o600", "uid": 0, "gid": 0}, report
    assert results["config_readable_by_service_user"] != 0, "others cannot read the settings"
    assert results["store"]["mode"] == "0o750" and results["store"]["uid"] == uid, report
    # systemd-analyze on the installed units.
    assert results["verify"][0] == 0 and not results["verify"][1].strip(), results["verify"]
    assert results["worker_verify"][0] == 0, results["worker_verify"]
    level = results["security"]
    print(f"\nsystemd-analyze security ckptd.service (installed, online): {level}")
    assert isinstance(level, list) and level[0] <= 2.0, level
    # The first job, done by the worker unit (a dynamic user too).
    assert results["worker_state"] == "active" and results["waited"] == 0, report
    assert results["done"].get("result") == {"priced": 1}, results["done"]
    worker_uid = results["worker_process"]["Uid"][0]
    assert set(results["worker_process"]["Groups"]) <= {worker_uid}, report
    assert results["worker_env_file"]["mode"] == "0o640", report
    # Reload, restart, CURVE with the key as a credential, a clean stop.
    assert results["reload"] == 0 and results["after_reload"] == "active", report
    assert results["after_restart"] == "active", report
    assert json.loads(results["status_after_restart"][1])["queues"]["price"]["done"] == 1
    assert "copied when the service started" in results["journal"], results["journal"][-3000:]
    assert results["curve_state"] == "active" and results["curve_status"] == 0, report
    assert results["secret_key"] == {"mode": "0o600", "uid": 0, "gid": 0}, report
    code, out = results["curve_without_keys"]
    assert code == 5 and "uses CURVE keys" in out, out
    assert results["stop_result"] == "success" and results["stop_status"] == "0", report
