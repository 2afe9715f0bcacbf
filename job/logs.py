"""Logging: JSON lines that Cloud Logging reads, carrying the request id of whatever is running.

The id lives in a context variable, so every line logged while a request runs names it, whichever
module logged it. On a terminal the lines stay human (rich), since people read those.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
prompt_id: ContextVar[str | None] = ContextVar("prompt_id", default=None)

_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "INFO": "INFO", "DEBUG": "DEBUG"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line with Cloud Logging's `severity` and `message` keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, var in (("request_id", request_id), ("prompt_id", prompt_id)):
            value = var.get()
            if value:
                entry[key] = value
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(fmt: str = "auto", level: int = logging.INFO) -> None:
    """Install one handler on the root logger: JSON off a terminal (or when asked), rich on one."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler: logging.Handler
    if use_json:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=True, markup=False)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "httpx", "httpcore", "websocket", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def request_context(rid: str | None) -> Iterator[None]:
    """Tag every log line inside the block with this request id."""
    token = request_id.set(rid)
    try:
        yield
    finally:
        request_id.reset(token)
