"""How many examples the property-based (Hypothesis) tests draw.

Drawing the examples, not running the decoders, is what these tests spend their time on
(py-spy: 90 % of test_decoder.py inside Hypothesis' strategies). The suite draws enough to
catch the classes of input each test names; ``CKPTD_FUZZ_SCALE=10 pytest tests/security
tests/unit/test_protocol.py`` draws ten times as many, for a deeper run before a release.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("CKPTD_FUZZ_SCALE", "1"))


def examples(base: int) -> int:
    """``base`` examples, times ``CKPTD_FUZZ_SCALE``."""
    return max(1, round(base * SCALE))
