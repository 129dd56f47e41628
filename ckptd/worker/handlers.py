"""Finding a handler by name: ``MODULE:FUNCTION``, as ``ckptd worker`` is given it."""

from __future__ import annotations

import importlib
import os
import sys

from ckptd.core.errors import CkptdError
from ckptd.worker.job import Handler


def load_handler(spec: str) -> Handler:
    """Import ``MODULE:FUNCTION`` (the current folder is on the path) and return it."""
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise CkptdError(f"handler {spec!r} must look like MODULE:FUNCTION, e.g. tasks:price")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CkptdError(f"cannot import {module_name!r} for handler {spec!r}: {exc}") from None
    handler = getattr(module, func_name, None)
    if not callable(handler):
        raise CkptdError(f"{module_name!r} has no function {func_name!r}")
    return handler  # type: ignore[no-any-return]
