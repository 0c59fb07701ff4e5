"""How every hostwright process logs: one line per record on stderr, as text or as JSON.

``HOSTWRIGHT_LOG_FORMAT=text`` (the default) is for a person reading a terminal;
``json`` gives one JSON object per line for a log shipper. Either way a record carries

- ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``;
- ``command_id``: the command that caused the work (domain/correlation.py), when there is one;
- whatever the line was given as ``extra`` (the gateway's ``method``, ``path``, ``status``,
  ``duration_ms``, ``credential``; a step's ``service``, ``task``, ``server``, ``reason``…);
- ``exception``: the traceback, when the line has one (inside the JSON object, so a shipper
  never sees a line that is not JSON).

In text only the command id follows the message (``command_id=…``): the other fields are what
the message says already, in words. Secrets never reach a record:
the lines name credentials and services, never tokens, keys or passwords.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from domain.correlation import current_command_id
from ops.settings import Settings, SettingsError

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# loggers whose every line is noise at INFO: a line per HTTP call (httpx) or SSH channel
CHATTY = ("httpx", "asyncssh")

# What every LogRecord has; anything else on a record came as ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class CommandIdFilter(logging.Filter):
    """Puts the current command id on every record that has none of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "command_id", None) is None:
            record.command_id = current_command_id()
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields the line was given besides its message (``extra``), None values left out;
    the command id first, so the lines of one command line up."""
    fields = {"command_id": getattr(record, "command_id", None)} | {
        key: value for key, value in vars(record).items() if key not in _STANDARD
    }
    return {key: value for key, value in fields.items() if value is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **extra_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic ``time LEVEL logger: message`` line, its command id after it."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        command_id = getattr(record, "command_id", None)
        return text if command_id is None else f"{text} command_id={command_id}"


def configure_logging(log_format: str, stream: TextIO | None = None) -> logging.Handler | None:
    """Sends every record at INFO and above to ``stream`` (stderr) in ``log_format``; the
    handler, or None when the root logger had handlers already (a test's, an embedding
    program's: theirs are left alone)."""
    if log_format not in LOG_FORMATS:
        raise SettingsError(f"HOSTWRIGHT_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    root = logging.getLogger()
    _quiet_chatty_loggers()
    if root.handlers:
        return None
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(CommandIdFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # a warning is a log line too, in the same format
    return handler


def configure_from_settings(environ: Mapping[str, str] | None = None) -> None:
    """``configure_logging`` in the format the settings name. Settings that do not load are
    the command's to report (with exit code 2): until then, lines are text."""
    try:
        log_format = Settings.load(environ).log_format
    except SettingsError:
        log_format = "text"
    configure_logging(log_format)


def _quiet_chatty_loggers() -> None:
    for chatty in CHATTY:
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # psycopg_pool warns at every failed connection attempt; each part says once per outage
    # that the database is away and once that it is back (ops/store/outage.py)
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
