"""Structured logging: JSON lines (one object per event) or a text form for terminals.

Owns the log format and redaction; callers pass fields, never preformatted secrets.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

LOGGER_NAME = "mailmgr"
_SECRET_KEYS = frozenset({"password", "smtp_password", "secret", "crl", "ca_content", "key"})
_logger = logging.getLogger(LOGGER_NAME)  # the same object setup() configures
_encoder = json.JSONEncoder(default=str, separators=(",", ":"))
# `worker` and `pid` on every line of a process serving with Processes > 1 (set_process);
# empty otherwise, so the single-process format is unchanged.
_process: dict[str, Any] = {}


def set_process(**fields: Any) -> None:
    """Fields every following line carries (after `event`): `worker=n` in a worker process,
    the `pid`. Replaces what was set before; no arguments clears them."""
    _process.clear()
    _process.update(fields)


def _redact(fields: dict[str, Any]) -> dict[str, Any]:
    """Redact in place: `fields` is the caller's fresh **kwargs dict, never shared."""
    for k in fields:
        if k.lower() in _SECRET_KEYS:
            fields[k] = "***"
    return fields


class _JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _ts(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once per second, not once per line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self._ts(record),
            "level": record.levelname,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        if _process:
            data.update(_process)
        data.update(getattr(record, "fields", {}))
        if record.exc_info and record.levelno >= logging.ERROR:
            data["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(data)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", {})
        if _process:
            fields = {**_process, **fields}
        parts = " ".join(f"{k}={v}" for k, v in fields.items())
        event = getattr(record, "event", record.getMessage())
        return f"{when} {record.levelname:<7} {event} {parts}".rstrip()


def setup(fmt: str = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event. Secret-looking keys are redacted."""
    logger = _logger
    if logger.isEnabledFor(level):
        # makeRecord + handle is what Logger.log does minus the caller lookup (a stack walk
        # per line); no formatter of ours prints the caller.
        record = logger.makeRecord(
            LOGGER_NAME,
            level,
            "",
            0,
            name,
            (),
            None,
            extra={"event": name, "fields": _redact(fields)},
        )
        logger.handle(record)


def record(name: str, fields: dict[str, Any]) -> None:
    """Write one Mail Manager log record (records.py) as an INFO line whatever the logger's
    level: `Log.Records` asked for it. `fields` is handed over and redacted like any line's."""
    logger = _logger
    logger.handle(logger.makeRecord(
        LOGGER_NAME, logging.INFO, "", 0, name, (), None,
        extra={"event": name, "fields": _redact(fields)},
    ))


def warning(name: str, **fields: Any) -> None:
    event(name, logging.WARNING, **fields)


def error(name: str, **fields: Any) -> None:
    event(name, logging.ERROR, **fields)
