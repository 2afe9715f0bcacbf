"""JSON log lines that Cloud Logging reads as structured entries, tagged with the event's id.

Cloud Run (which hosts gen2 functions) turns each JSON line on stdout into a log entry: `severity`
and `message` become the entry's own, every other key lands in `jsonPayload`.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from typing import Any

LOGGER_NAME = "trigger"
event_id: ContextVar[str | None] = ContextVar("event_id", default=None)

_FIELDS = ("source", "action", "execution", "reason", "event_type")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: severity, message, logger, event_id and any known extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        current = event_id.get()
        if current:
            entry["event_id"] = current
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["message"] += "\n" + self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure() -> logging.Logger:
    """Give the `trigger` logger one JSON handler on stdout (idempotent) and return it."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger
