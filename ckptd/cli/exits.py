"""Exit codes, and errors as one red line that says what to do.

Every error of a ``ckptd`` command ends here: a :class:`~ckptd.core.errors.CkptdError`
carries its own exit code; click's usage errors, an interrupt and a closed pipe get theirs;
anything else is a bug, said in one line too (``--log-level debug`` adds the traceback).
The guide's table of exit codes (docs/guide/inspect-and-repair.md) is :data:`EXIT_CODES`
(a test holds them together).
"""

from __future__ import annotations

import io
import os
import sys
import traceback
from collections.abc import Callable

import click

from ckptd.core.errors import CkptdError

OK = 0
ERROR = 1
USAGE = 2
NOT_FOUND = 3
EXISTS = 4
INVALID = 5
STORE = 6
DAEMON = 7
JOBS_FAILED = 8
PROBLEMS = 9
INTERRUPTED = 130
PIPE_CLOSED = 141

EXIT_CODES: dict[int, str] = {
    OK: "ok",
    ERROR: "any other error (the message says what)",
    USAGE: "usage: an unknown option, a missing argument",
    NOT_FOUND: "not found: a job, a queue, the store, a file",
    EXISTS: "already exists or in use (a job id, a key file, a port, the root's lock), or "
            "not allowed in the job's state",
    INVALID: "invalid: a bad name, value, setting, key or handler",
    STORE: "store error: cannot read or write the store",
    DAEMON: "daemon unreachable, or standing by",
    JOBS_FAILED: "jobs failed or the wait timed out (wait)",
    PROBLEMS: "problems found (fsck, doctor)",
    INTERRUPTED: "interrupted (Ctrl-C)",
    PIPE_CLOSED: "the output pipe was closed early (| head): silent",
}
"""Every exit code of ``ckptd``, with what it means: the guide's table."""


class PipeClosed(Exception):  # noqa: N818 - not an error: the reader left
    """Raised when the output pipe was closed early (``| head``): not an OSError, so that
    click passes it on instead of handling it with an exit code of its own."""


def fail(message: str, code: int) -> int:
    """Print ``error: message`` in red on stderr as one line; return ``code``."""
    line = " ".join(message.split())  # one line, whatever the message held
    click.secho(f"error: {line}", fg="red", err=True)
    return code


_NO_ARGS_IS_HELP: type[click.UsageError] | tuple[()] = getattr(  # click >= 8.2
    click.exceptions, "NoArgsIsHelpError", ())


def _usage(exc: click.UsageError) -> int:
    if _NO_ARGS_IS_HELP and isinstance(exc, _NO_ARGS_IS_HELP):
        exc.show()  # plain `ckptd` or `ckptd GROUP`: the help is the answer
        return USAGE
    where = exc.ctx.command_path if exc.ctx is not None else "ckptd"
    return fail(f"{exc.format_message()} (see '{where} --help')", USAGE)


def _pipe_closed() -> int:
    # Nothing may be written to the closed pipe again, not even at exit when Python flushes.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return PIPE_CLOSED


def _notes(exc: BaseException) -> list[str]:
    """The notes added to an error on its way up (what was left half done), also those of
    the KeyboardInterrupt that click turned into Abort."""
    found: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found += [str(note) for note in getattr(current, "__notes__", ())]
        current = current.__cause__ or current.__context__
    return found


def exit_code_of(exc: BaseException, debug: bool = False) -> int:
    """Report ``exc`` (one red line, or nothing for a closed pipe); return the exit code."""
    if isinstance(exc, (BrokenPipeError, PipeClosed)):
        return _pipe_closed()
    notes = _notes(exc)
    if isinstance(exc, CkptdError):
        return fail("; ".join([str(exc), *notes]), exc.exit_code)
    if isinstance(exc, click.UsageError):
        return _usage(exc)
    if isinstance(exc, click.ClickException):
        return fail(exc.format_message(), exc.exit_code)
    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        click.echo("", err=True)  # after the terminal's ^C
        for note in notes:  # what was left half done, and how to finish it
            click.secho(f"interrupted: {note}", fg="yellow", err=True)
        return INTERRUPTED
    if isinstance(exc, ValueError):
        return fail(str(exc), INVALID)
    if isinstance(exc, OSError):
        what = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{what}{exc.strerror or exc}", ERROR)
    if debug:
        traceback.print_exception(exc)
    return fail(f"unexpected {type(exc).__name__}: {exc} (a bug in ckptd: please report it "
                "with the command you ran; --log-level debug shows the traceback)", ERROR)


def _whole_writes() -> None:
    """Make stdout write all it is given, or raise.

    Under PYTHONUNBUFFERED=1 (or ``python -u``, common in containers) stdout's text layer
    writes straight to the file descriptor and drops what a short write left: a reader that
    closes the pipe while a long write waits in it (``| head``) silently costs the rest of
    the output, and the exit code is 0, not 141. A buffered layer writes the rest, or raises
    BrokenPipeError; flushed at each line, it keeps the unbuffered promise."""
    out = sys.stdout
    if not isinstance(getattr(out, "buffer", None), io.RawIOBase):
        return
    try:
        raw = io.FileIO(out.fileno(), "wb", closefd=False)
    except (OSError, ValueError):
        return
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=out.encoding,
                                  errors=out.errors, line_buffering=True)


def run(command: Callable[[], object], debug: Callable[[], bool]) -> int:
    """Run ``command`` (the click group, not standalone) and return the exit code."""
    _whole_writes()
    try:
        try:
            result = command()
        finally:
            sys.stdout.flush()  # here, so that a closed pipe is seen while it can be handled
        return result if isinstance(result, int) else OK
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (OK if code is None else fail(str(code), 1))
    except BaseException as exc:  # noqa: BLE001 - every error becomes an exit code
        return exit_code_of(exc, debug())
