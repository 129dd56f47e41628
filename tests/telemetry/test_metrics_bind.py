"""The dashboard has no authentication: only loopback unless the operator says --insecure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import base_env, free_port


@pytest.mark.slow
def test_a_non_loopback_metrics_bind_is_refused_without_insecure(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "ckptd", "--root", str(tmp_path / "store"), "serve",
            "--control", f"tcp://127.0.0.1:{free_port()}",
            "--dispatch", f"tcp://127.0.0.1:{free_port()}", "--metrics-port", str(free_port())]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60,
                            env=base_env(CKPTD_METRICS_BIND="0.0.0.0"))
    assert result.returncode == 5
    assert "no authentication" in result.stderr and "--insecure" in result.stderr
