"""What the user hands a command besides options: a payload, as JSON text or in a file."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from ckptd.core.errors import FileMissing, InvalidInput


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON (use null, a number or a string)")


def read_payload(payload_json: str | None, payload_file: str | None) -> Any:
    """The payload of a submit: PAYLOAD_JSON, or the JSON held by ``--payload-file``
    (``-`` for stdin), or None when neither is given.

    Raises FileMissing for a file that is not there, InvalidInput for text that is not one
    JSON value (with the fix that fits where it came from).
    """
    if payload_json is not None and payload_file is not None:
        raise click.UsageError("give PAYLOAD_JSON or --payload-file, not both")
    if payload_file is not None:
        text = _read_file(payload_file)
        source = "stdin" if payload_file == "-" else f"--payload-file {payload_file}"
        fix = ("the file must hold one JSON value; check it with: python3 -m json.tool "
               + ("FILE" if payload_file == "-" else payload_file))
    elif payload_json is not None:
        text, source = payload_json.encode(), "PAYLOAD_JSON"
        fix = """quote it for the shell as JSON, e.g. '{"sku": "A-1"}' or '"hello"'"""
    else:
        return None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidInput(f"{source} is nested too deeply to be a payload") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise InvalidInput(f"{source} is not valid JSON ({exc}); {fix}") from None


def _read_file(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise FileMissing(f"--payload-file {path}: no such file; give the path of a file "
                          "holding one JSON value, or - to read it from stdin") from None
    except IsADirectoryError:
        raise InvalidInput(f"--payload-file {path} is a folder; give a file holding one "
                           "JSON value") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read --payload-file {path}: {exc.strerror}") from None
