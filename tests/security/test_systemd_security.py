"""The daemon's unit file keeps its sandbox: ``systemd-analyze security`` rates it below 2.0.

systemd-analyze needs ExecStart to exist, so a copy points it at this environment's ckptd
(as tests/integration/test_systemd.py does for ``verify``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEVEL = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def offline_security_supported() -> bool:
    if shutil.which("systemd-analyze") is None:
        return False
    result = subprocess.run(["systemd-analyze", "security", "--help"], capture_output=True,
                            text=True, timeout=60)
    return "--offline" in result.stdout


@pytest.mark.skipif(not offline_security_supported(),
                    reason="systemd-analyze security --offline is not available here")
def test_the_daemon_unit_s_exposure_level_is_below_2(tmp_path: Path) -> None:
    ckptd = os.path.join(os.path.dirname(sys.executable), "ckptd")
    text = (REPO / "systemd" / "ckptd.service").read_text()
    (tmp_path / "ckptd.service").write_text(text.replace("/opt/ckptd/bin/ckptd", ckptd))
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                             str(tmp_path / "ckptd.service")],
                            capture_output=True, text=True, timeout=120)
    found = LEVEL.search(result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    level = float(found.group(1))
    print(f"\nsystemd-analyze security: ckptd.service exposure level {level}")
    assert level < 2.0, result.stdout
