"""Finding a handler: a function, or its name ``MODULE:FUNCTION`` as ``ckptd worker`` is
given it."""

from __future__ import annotations

import importlib
import os
import sys

from ckptd.core.errors import ConfigError
from ckptd.worker.job import Handler


def load_handler(spec: str) -> Handler:
    """Import ``MODULE:FUNCTION`` (the current folder is on the path) and return it.

    Raises ConfigError saying what is wrong: a malformed name, a module that cannot be
    imported (whatever the module raised while importing), or no such function.
    """
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ConfigError(f"handler {spec!r} must look like MODULE:FUNCTION, e.g. tasks:price")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] and exc.name != module_name:
            raise ConfigError(f"cannot import {module_name!r} for handler {spec!r}: it needs "
                              f"{exc.name!r}, which is not installed") from None
        raise ConfigError(f"no module {module_name!r} for handler {spec!r}: run the worker "
                          f"in the folder that holds {module_name.replace('.', '/')}.py, or "
                          "add its folder to PYTHONPATH") from None
    except Exception as exc:  # noqa: BLE001 - whatever the module raises while importing
        where = ""
        if isinstance(exc, SyntaxError) and exc.filename:
            where = f" ({exc.filename}, line {exc.lineno})"
        raise ConfigError(f"cannot import {module_name!r} for handler {spec!r}: "
                          f"{type(exc).__name__}: {exc}{where}") from None
    handler = getattr(module, func_name, None)
    if not callable(handler):
        raise ConfigError(f"module {module_name!r} has no function {func_name!r} (handler "
                          f"{spec!r})")
    return handler  # type: ignore[no-any-return]


def resolve_handler(handler: Handler | str) -> Handler:
    """The handler a Worker was given: a function as it is, a ``MODULE:FUNCTION`` string
    imported (:func:`load_handler`). Raises ConfigError for anything else, at once, rather
    than letting every job fail on it."""
    if isinstance(handler, str):
        return load_handler(handler)
    if not callable(handler):
        raise ConfigError(f"the handler must be a function that takes a ckptd.Job (or its name "
                          f"as 'MODULE:FUNCTION'), not {type(handler).__name__} {handler!r}")
    return handler
