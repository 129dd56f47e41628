"""Wheels of this checkout's dependencies, for tests that install ckptd as its documentation
says (``pip install .``) without reaching the package index each time.

Made once per ``pyproject.toml`` (in ``~/.cache/ckptd-tests/wheelhouse/<hash>``, or
``$CKPTD_TEST_WHEELHOUSE``) with the test environment's pip, which may use the index then;
a test hands it to pip as ``PIP_FIND_LINKS`` with ``PIP_NO_INDEX=1``. The build backend
(setuptools) is in it too; ckptd itself is not: the documented command builds it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CKPTD_TEST_WHEELHOUSE",
                            Path.home() / ".cache" / "ckptd-tests" / "wheelhouse"))


def wheelhouse() -> Path:
    """The folder of wheels (made on first use, then kept)."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    folder = CACHE / key
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir",
                        str(folder), str(REPO), "setuptools>=77"], check=True, timeout=900)
        for wheel in folder.glob("ckptd-*.whl"):
            wheel.unlink()  # the documented command builds ckptd from the checkout
        (folder / ".complete").touch()
    return folder
