"""Logging in the key=value text form the Go binaries write (log/slog's
TextHandler), so one grep works across the executors of every language."""

from __future__ import annotations

import datetime
import itertools
import logging
import sys
from typing import Any, Mapping

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
# Each new_logger gets its own logging.Logger (loggers live for the process,
# keyed by name); a counter keeps the names distinct.
_SEQUENCE = itertools.count(1)
_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR"}


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\\\n\t') or not text.isprintable():
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    return text


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        parts = [
            f"time={when.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}",
            f"level={_NAMES.get(record.levelno, record.levelname)}",
            f"msg={_quote(record.getMessage())}",
        ]
        for k, v in getattr(record, "fields", {}).items():
            parts.append(f"{k}={_quote(v)}")
        if record.exc_info:
            parts.append(f"err={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def new_logger(level: str = "info", stream=None) -> "Logger":
    """new_logger writes records at level and above to stream (stderr)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    base = logging.getLogger(f"tasker_executor.{next(_SEQUENCE)}")
    base.propagate = False
    base.setLevel(LEVELS[level])
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_TextFormatter())
    base.addHandler(handler)
    return Logger(base, {})


class Logger:
    """Logger is a logging.Logger with fields attached, like slog's With."""

    def __init__(self, base: logging.Logger, fields: Mapping[str, Any]):
        self._base = base
        self._fields = dict(fields)

    def with_(self, **fields: Any) -> "Logger":
        """with_ returns a logger adding fields to every record."""
        return Logger(self._base, {**self._fields, **fields})

    def _log(self, level: int, msg: str, fields: Mapping[str, Any]) -> None:
        if self._base.isEnabledFor(level):
            self._base.log(level, msg, extra={"fields": {**self._fields, **fields}})

    def debug(self, msg: str, **fields: Any) -> None:
        """debug logs at DEBUG."""
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        """info logs at INFO."""
        self._log(logging.INFO, msg, fields)

    def warn(self, msg: str, **fields: Any) -> None:
        """warn logs at WARN."""
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        """error logs at ERROR."""
        self._log(logging.ERROR, msg, fields)
