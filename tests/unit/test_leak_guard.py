"""The guard in tests/conftest.py can fail: a test that leaks a thread or a process fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LEAKY = '''
import subprocess
import sys
import threading
import time


def test_leaks_a_thread():
    threading.Thread(target=time.sleep, args=(3,), daemon=True, name="leaky-thread").start()


def test_leaks_a_process(tmp_path_factory):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    with open({pidfile!r}, "w") as handle:
        handle.write(str(child.pid))


def test_cleans_up():
    thread = threading.Thread(target=time.sleep, args=(0.05,))
    thread.start()
    thread.join()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
'''


@pytest.mark.slow
def test_leaking_tests_fail_and_clean_ones_pass(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    (tmp_path / "test_leaky.py").write_text(LEAKY.format(pidfile=str(pidfile)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}
    env["TESTS_LEAK_GRACE"] = "0.5"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
             "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    out = done.stdout
    assert done.returncode == 1, out
    assert "ERROR at teardown of test_leaks_a_thread" in out, out
    assert "ERROR at teardown of test_leaks_a_process" in out, out
    assert "leaked threads ['leaky-thread']" in out
    assert "time.sleep(30)" in out, "the leaked process is named"
    assert "3 passed, 2 errors" in out, out
