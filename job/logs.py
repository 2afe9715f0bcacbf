"""Logging: JSON lines that Cloud Logging reads, carrying the request id of whatever is running.

The id lives in a context variable, so every line logged while a request runs names it, whichever
module logged it. On a terminal the lines stay human (rich), since people read those; there `run`
also moves ComfyUI's own lines to a file (`log_to_file`) and shows only the first line of ours
(`first_lines`), so a person sees what we did and where ComfyUI's log is, not its boot chatter.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
prompt_id: ContextVar[str | None] = ContextVar("prompt_id", default=None)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colour and cursor codes, which ComfyUI prints even into a pipe
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


class _FirstLine(logging.Formatter):
    """A record's first line, marked when there was more, and no traceback: a person reads the
    error's own line (and `-v` for all of it)."""

    def format(self, record: logging.LogRecord) -> str:
        first, more, _ = record.getMessage().partition("\n")
        return f"{first} [...]" if more else first


class _FileLine(logging.Formatter):
    """A line as the program printed it: without our `[logger] ` tag and without terminal codes."""

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI.sub("", record.getMessage().removeprefix(f"[{record.name}] "))


def on_terminal(fmt: str = "auto") -> bool:
    """Whether a person reads our stderr: it is a terminal, and JSON lines were not asked for."""
    return fmt != "json" and sys.stderr.isatty()


def setup_logging(fmt: str = "auto", level: int = logging.INFO, *, first_lines: bool = False) -> None:
    """Install one handler on the root logger: JSON off a terminal (or when asked), rich on one.

    With `first_lines`, the rich handler shows each record's first line only: the rest of ours
    (ComfyUI's last lines, a node's traceback) is ComfyUI's own output, which `log_to_file` keeps.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler: logging.Handler
    if use_json:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=not first_lines, markup=False)
        if first_lines:
            handler.setFormatter(_FirstLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "httpx", "httpcore", "websocket", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_to_file(logger: logging.Logger, path: Path) -> None:
    """Send `logger`'s records to `path`, one plain line each, instead of to the root's handler."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(_FileLine())
    logger.handlers[:] = [handler]
    logger.propagate = False


@contextmanager
def request_context(rid: str | None) -> Iterator[None]:
    """Tag every log line inside the block with this request id."""
    token = request_id.set(rid)
    try:
        yield
    finally:
        request_id.reset(token)
