"""Logging set-up, done once by the CLI: text for people, JSON lines for log shippers.

Under systemd (``$JOURNAL_STREAM`` set) the text format has no timestamp of its own, since
journald adds one. Modules log through ``logging.getLogger(__name__)``; a state change is
logged with its facts in ``extra={"fields": {...}}`` so that the JSON format carries them
as keys and the text format appends them as ``key=value``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time


class TextFormatter(logging.Formatter):
    """``2026-11-27 19:24:16.123 INFO ckptd.daemon: message key=value ...``."""

    def __init__(self, timestamps: bool) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{k}={_short(v)}" for k, v in fields.items())
        if self.timestamps:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
            text = f"{stamp}.{int(record.msecs):03d} {text}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def under_systemd() -> bool:
    """Return True when stderr goes to the journal.

    systemd sets ``$JOURNAL_STREAM`` to ``DEVICE:INODE`` of the stream it connected; a child
    that inherited the variable but writes elsewhere (a pipe, a file) keeps its timestamps.
    """
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        device, inode = (int(part) for part in stream.split(":", 1))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return True  # cannot compare: trust the variable
    return (info.st_dev, info.st_ino) == (device, inode)


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Send log records to stderr in the chosen format (``auto`` = text, journald-aware)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(timestamps=not under_systemd()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("aiobotocore").setLevel(logging.WARNING)
    logging.getLogger("s3fs").setLevel(logging.WARNING)
    logging.getLogger("fsspec").setLevel(logging.WARNING)


def configure_if_unset(name: str, level: int = logging.INFO) -> logging.Handler | None:
    """Send logger ``name``'s records to stderr (text) when no logging was set up at all
    (a script that calls ``Worker(...).run()``): return the handler added, to remove it
    afterwards, or None when the program configured logging itself."""
    logger = logging.getLogger(name)
    if logging.getLogger().handlers or logger.handlers:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter(timestamps=not under_systemd()))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(level)
    return handler
