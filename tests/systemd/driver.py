"""Runs inside the test's container, under its systemd (tests/systemd/test_install.py).

It runs the install steps of docs/guide/systemd.md as written (given in /root/steps.json),
submits a job and has the worker unit do it, reloads, restarts and stops, and writes what it
saw into /root/results.json for the test to check. It always ends by asking systemd to exit
the container (``systemctl exit``), whatever happened.

Plain standard library: it runs under the container's own python3, not the test's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback
from typing import Any

RESULTS = "/root/results.json"
SRC = "/root/ckptd-src"
WORKER_HOST = "/root/worker-host"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LANG": "C.UTF-8",
       # pip installs from the wheels the test brought (no network in the container)
       "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/root/wheelhouse",
       "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
SUDO = 'sudo() { "$@"; }\n'  # root already: the documented "sudo" is a no-op here

results: dict[str, Any] = {"steps": []}


def save() -> None:
    with open(RESULTS + ".tmp", "w") as handle:
        json.dump(results, handle, indent=1)
    os.replace(RESULTS + ".tmp", RESULTS)


def sh(name: str, script: str, cwd: str = "/root", timeout: float = 600) -> tuple[int, str]:
    """Run ``script`` with bash -e; record its output under ``name``."""
    started = time.monotonic()
    try:
        done = subprocess.run(["bash", "-e", "-c", SUDO + script], cwd=cwd, env=ENV,
                              capture_output=True, text=True, timeout=timeout)
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out = -1, f"timed out after {timeout}s: {exc.stdout!r} {exc.stderr!r}"
    results["steps"].append({"name": name, "code": code, "output": out[-6000:],
                             "seconds": round(time.monotonic() - started, 1)})
    save()
    return code, out


def value(script: str) -> str:
    return subprocess.run(["bash", "-c", script], env=ENV, capture_output=True,
                          text=True).stdout.strip()


def process(unit: str) -> dict[str, Any]:
    """The main process of ``unit``: its ids as the kernel has them."""
    pid = value(f"systemctl show -p MainPID --value {unit}")
    info: dict[str, Any] = {"pid": pid}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("Uid", "Gid", "Groups", "CapEff", "NoNewPrivs"):
                    info[key] = rest.split()
    except OSError as exc:
        info["error"] = str(exc)
    uid = (info.get("Uid") or ["0"])[0]
    info["passwd"] = value(f"grep -c '^[^:]*:[^:]*:{uid}:' /etc/passwd || true")
    return info


def mode(path: str) -> dict[str, Any]:
    try:
        st = os.stat(path)
    except OSError as exc:
        return {"error": str(exc)}
    return {"mode": oct(st.st_mode & 0o7777), "uid": st.st_uid, "gid": st.st_gid}


def wait_active(unit: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = value(f"systemctl is-active {unit}")
        if state == "active":
            break
        time.sleep(0.5)
    return state


def main() -> None:
    steps = json.load(open("/root/steps.json"))
    daemon_lines, worker_lines = steps["daemon"], steps["worker"]
    code, _ = sh("install the daemon", "\n".join(daemon_lines), cwd=SRC, timeout=900)
    results["daemon_installed"] = code == 0
    results["daemon_state"] = wait_active("ckptd")
    results["daemon_process"] = process("ckptd")
    results["config_file"] = mode("/etc/ckptd/ckptd.toml")
    uid = (results["daemon_process"].get("Uid") or ["0"])[0]
    gid = (results["daemon_process"].get("Gid") or ["0"])[0]
    # What the service's user can do with the files as the install left them.
    results["config_readable_by_service_user"] = sh(
        "the service user reads /etc/ckptd/ckptd.toml",
        f"setpriv --reuid {uid} --regid {gid} --clear-groups cat /etc/ckptd/ckptd.toml")[0]
    results["store"] = mode("/var/lib/ckptd/ckptd-data")
    results["verify"] = sh("systemd-analyze verify",
                           "systemd-analyze verify ckptd.service 2>&1")
    found = sh("systemd-analyze security", "systemd-analyze security --no-pager ckptd.service")
    level = re.search(r"Overall exposure level for ckptd\.service: (\d+(?:\.\d+)?) (\w+)",
                      found[1])
    results["security"] = [float(level.group(1)), level.group(2)] if level else found[1][-500:]
    save()

    code, out = sh("submit the first job",
                   "ckptd --connect 127.0.0.1:5550 submit price '{\"sku\": \"A-1\", \"qty\": 3}'")
    job_id = out.strip().splitlines()[0] if code == 0 and out.strip() else ""
    results["job_id"] = job_id
    os.makedirs(WORKER_HOST, exist_ok=True)
    with open(f"{WORKER_HOST}/tasks.py", "w") as handle:
        handle.write(steps["tasks_py"])
    if not os.path.exists(f"{WORKER_HOST}/ckptd"):
        os.symlink(SRC, f"{WORKER_HOST}/ckptd")
    code, _ = sh("install a worker (all but its last line)", "\n".join(worker_lines[:-1]),
                 cwd=WORKER_HOST, timeout=900)
    sh("set the worker's environment file",
       "sed -i -e 's|^CKPTD_CONNECT=.*|CKPTD_CONNECT=tcp://127.0.0.1:5550|' "
       "-e 's|^CKPTD_HANDLER=.*|CKPTD_HANDLER=tasks:price|' "
       "-e 's|^CKPTD_CONCURRENCY=.*|CKPTD_CONCURRENCY=2|' /etc/ckptd/worker.env")
    code, _ = sh("start the worker (the last line)", worker_lines[-1], cwd=WORKER_HOST)
    results["worker_state"] = wait_active("ckptd-worker@price")
    results["worker_verify"] = sh("systemd-analyze verify (worker)",
                                  "systemd-analyze verify ckptd-worker@price.service 2>&1")
    results["waited"] = sh("wait for the job",
                           f"ckptd --connect 127.0.0.1:5550 wait price {job_id} --timeout 2m")[0]
    results["worker_process"] = process("ckptd-worker@price")
    done_file = f"/var/lib/ckptd/ckptd-data/price/done/{job_id}.json"
    try:
        results["done"] = json.load(open(done_file))
    except (OSError, ValueError) as exc:
        results["done"] = {"error": str(exc)}
    results["worker_env_file"] = mode("/etc/ckptd/worker.env")

    results["reload"] = sh("reload", "systemctl reload ckptd")[0]
    results["after_reload"] = wait_active("ckptd")
    results["restart"] = sh("restart", "systemctl restart ckptd")[0]
    results["after_restart"] = wait_active("ckptd")
    results["status_after_restart"] = sh("status after the restart",
                                         "ckptd --connect 127.0.0.1:5550 status --json")
    sh("stop the worker", "systemctl stop ckptd-worker@price")
    results["worker_result"] = value("systemctl show -p Result --value ckptd-worker@price")

    code, _ = sh("CURVE steps", "\n".join(steps["curve"]), cwd="/root")
    results["curve_installed"] = code == 0
    results["curve_state"] = wait_active("ckptd")
    results["secret_key"] = mode("/etc/ckptd/keys/server.key_secret")
    sh("a client key for the admin",
       "ckptd keygen /root/keys --name admin && cp /root/keys/admin.key /etc/ckptd/authorized_keys/"
       " && systemctl reload ckptd")
    results["curve_status"] = sh(
        "status with keys", "ckptd --connect 127.0.0.1:5550 --server-key "
        "/etc/ckptd/keys/server.key --client-key /root/keys/admin.key_secret status")[0]
    results["curve_without_keys"] = sh("status without keys",
                                       "ckptd --connect 127.0.0.1:5550 status")
    results["curve_process"] = process("ckptd")
    results["journal"] = value("journalctl -u ckptd -u ckptd-worker@price --no-pager "
                               "-o cat | tail -n 80")
    results["stop"] = sh("stop", "systemctl stop ckptd")[0]
    results["stop_result"] = value("systemctl show -p Result --value ckptd")
    results["stop_status"] = value("systemctl show -p ExecMainStatus --value ckptd")


if __name__ == "__main__":
    code = 0
    try:
        main()
    except BaseException:  # noqa: BLE001 - say it, then let the container go
        results["error"] = traceback.format_exc()
        code = 1
    finally:
        results["finished"] = True
        save()
        sys.stdout.flush()
        subprocess.run(["systemctl", "exit", str(code)], env=ENV)
