"""The README's install and first-job steps, as written, in a fresh shell and a fresh clone.

Every other docs test runs with this checkout's ckptd already on the PATH. This one starts
where a new user starts: a clone in a temporary folder and a shell with no venv activated
(``env -i``, a PATH of the system's folders only), then the README's lines in order: the
install block, the daemon, the handler module, the worker, the first job and the looks at
it. The daemon and the worker, which the README runs in terminals of their own, run in the
background of the same shell; the example job id of the README's sample output stands for
the one the submit printed. pip installs from a wheelhouse (tests/wheelhouse.py) instead of
the index, through its environment; the commands are the README's text. As root the
steps run in a network namespace of their own, so the README's default ports are theirs;
otherwise those ports are moved to free ones (CKPTD_CONTROL, and the worker's address).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.docs.blocks import Block, blocks, commands
from tests.docs.shell import EXAMPLE_ID
from tests.procs import free_port
from tests.wheelhouse import wheelhouse

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

pytestmark = pytest.mark.slow


def _sh(block: Block) -> list[str]:
    return commands(block) if block.lang == "sh" else []


def readme_steps() -> tuple[list[str], str, list[str]]:
    """(the install lines, the handler module, the first job's lines) of the README."""
    found = blocks(README.read_text())
    [install] = [b for b in found if b.lang == "sh" and "python3 -m venv" in b.text]
    [tasks] = [b for b in found if b.lang == "python" and b.text.startswith("# tasks.py")]
    lines = [line for b in found[found.index(install) + 1:] for line in _sh(b)]
    serve = next(line for line in lines if re.search(r"^ckptd serve\b", line))
    workers = [line for line in lines if line.startswith("ckptd worker")]
    # The worker beside the daemon (a README may show only one for another machine: its
    # daemon's machine is this one here).
    worker = next((line for line in workers if "127.0.0.1" in line), workers[0])
    worker = worker.replace("10.0.0.5", "127.0.0.1")
    first = [line for line in lines if line.startswith(("ckptd --root ./data", "ls ", "cat "))
             or (line.startswith("ckptd --connect 127.0.0.1") and " status" in line)]
    assert any(" submit " in line for line in first), first
    return commands(install), tasks.text, [serve, worker, *first]


def script(install: list[str], first_job: list[str], port: int | None) -> str:
    """The shell script of the steps (``port``: where the README's 5550 moves, if it must)."""
    serve, worker, *looks = (re.sub(r"\s+#.*$", "", line) for line in first_job)
    out = ["set -e", *install]
    if port is not None:
        out.append(f"export CKPTD_CONTROL=tcp://127.0.0.1:{port} "
                   f"CKPTD_DISPATCH=tcp://127.0.0.1:{port + 1}")
        worker = worker.replace(":5550", f":{port}")
        looks = [line.replace(":5550", f":{port}") for line in looks]
    control = f"127.0.0.1:{port or 5550}"
    out += [f"{serve} > serve.log 2>&1 &",  # the README's first terminal
            f"for n in $(seq 600); do ckptd --connect {control} status >/dev/null 2>&1 "
            "&& break; sleep 0.2; done",
            f"{worker} > worker.log 2>&1 &"]  # its second terminal
    for line in looks:
        if " submit " in line:
            out.append(f"JOB=$({line})")
        else:
            out.append(line.replace(EXAMPLE_ID, "$JOB").replace("wait price $JOB",
                                                                 "wait price $JOB --timeout 2m"))
    out += ["kill %2 %1", "wait"]
    return "\n".join(out) + "\n"


def test_the_readme_s_install_and_first_job_run_in_a_fresh_shell(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a checkout to clone")
    install, tasks, first_job = readme_steps()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    (clone / "tasks.py").write_text(tasks)  # "Write a handler ... # tasks.py"
    isolated = os.geteuid() == 0 and shutil.which("unshare") is not None
    text = script(install, first_job, None if isolated else free_port())
    (tmp_path / "steps.sh").write_text(text)
    env = {"HOME": str(tmp_path / "home"), "PATH": SYSTEM_PATH, "LANG": "C.UTF-8",
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse()),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    shell = ["bash", "--noprofile", "--norc", str(tmp_path / "steps.sh")]
    if isolated:  # a network of its own: the README's ports 5550 and 5551 are free there
        shell = ["unshare", "--net", "bash", "-c", "ip link set lo up && exec "
                 + shlex.join(shell)]
    # In a session of its own, so that whatever it started can be stopped with it.
    proc = subprocess.Popen(shell, cwd=clone, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # a daemon or worker left by a failed step
        except ProcessLookupError:
            pass
        proc.wait()
    done = subprocess.CompletedProcess(shell, proc.returncode, stdout, stderr)
    logs = "".join(f"\n--- {n}\n{(clone / n).read_text()[-3000:]}" for n in
                   ("serve.log", "worker.log") if (clone / n).exists())
    assert done.returncode == 0, f"{text}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}{logs}"
    assert '"result":{"priced":1}' in done.stdout.replace(" ", ""), done.stdout
    assert re.search(r"^price\s+0\s+0\s+0\s+0\s+1\s+0\b", done.stdout, re.M), done.stdout
