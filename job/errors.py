"""Every error the worker reports, and the one place that renders the contract's error shape.

    WorkerError                       500 worker_error
    ├── RequestError                  4xx: the caller's mistake; retrying the same request fails again
    │   ├── InvalidJSON               400 invalid_json
    │   ├── InvalidRequest            422 invalid_request
    │   │   └── UIFormatWorkflow      422 ui_format_workflow
    │   ├── InvalidInput              400 invalid_input
    │   │   └── InputNotFound         404 not_found              (a gs:// or https:// input does not exist)
    │   ├── WorkflowInvalid           400 workflow_invalid       (ComfyUI's /prompt said 400)
    │   │   ├── UnknownNode           400 unknown_node
    │   │   └── MissingModel          400 missing_model
    │   ├── Unauthorized              401 unauthorized
    │   ├── AccessDenied              403 access_denied          (storage refused the service account)
    │   ├── PayloadTooLarge           413 payload_too_large
    │   ├── QueueFull                 429 queue_full
    │   └── Cancelled                 409 cancelled              (its caller cancelled an async request)
    ├── ExecutionFailed               500 execution_error        (a node raised while running)
    ├── RunTimeout                    504 timeout                (the deadline passed; ComfyUI was interrupted)
    ├── ComfyUnavailable              503 comfyui_unavailable    (retryable: not up, or not answering)
    │   └── ComfyCrashed              502 comfyui_crashed        (retryable: the process died mid-run)
    ├── ShuttingDown                  503 shutting_down          (retryable: SIGTERM; another instance answers)
    ├── StorageError                  502 storage_error          (retryable: GCS or disk failed us)
    └── ConfigurationError            500 configuration_error    (an environment variable is wrong)

`retryable` is what the job's exit code follows: a retryable error exits non-zero so Cloud Run
retries the task; anything else is a *finished* item with an error `result.json`.

What a caller sees is rendered here only (`to_dict`), and it is made safe here: every string is cut
(`clip`), server paths are replaced by `<server>/name`, and lone surrogates are escaped, so no
error body carries a traceback, a folder of the worker or megabytes of the caller's own value back.
Each error has a short random `id`, in the body and in the log lines about it: the log keeps the
details the body leaves out (a node's traceback, ComfyUI's log lines).
"""

from __future__ import annotations

import functools
import re
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

ECHO_LIMIT = 300  # characters of any one value echoed back (a received value, a name, a detail)
MESSAGE_LIMIT = 4000  # characters of a whole message (it may list several nodes)
LIST_LIMIT = 200  # items of any one list (choices)
_FHS_ROOTS = ("bin", "boot", "dev", "etc", "home", "lib", "lib64", "mnt", "opt", "proc", "root", "run", "srv",
              "sys", "tmp", "usr", "var", "work", "workspace", "app", "content", "data")  # fmt: skip
_SURROGATE = re.compile("[\ud800-\udfff]")


def seconds(value: float) -> str:
    """A duration as a person reads it in a message: `2 s`, `1.5 s`, `0.25 s`, `120 s`, never `1.99998 s`.

    Deadlines reach messages after arithmetic (what is left of a request's timeout_s), so they are
    rounded: whole seconds from 10 s, one decimal from 1 s, two significant digits below.
    """
    value = max(value, 0.0)
    if value >= 10:
        return f"{round(value)} s"
    if value >= 1:
        return f"{round(value, 1):g} s"
    return f"{value:.2g} s"


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


@functools.cache
def _server_path() -> re.Pattern[str]:
    """Absolute paths under the top folders of this machine (and the usual ones of any Linux box)."""
    roots = set(_FHS_ROOTS)
    for place in (Path.home(), Path(sys.prefix), Path.cwd(), Path(tempfile.gettempdir())):
        if len(place.parts) > 1:
            roots.add(place.parts[1])
    alternatives = "|".join(sorted(map(re.escape, roots), key=len, reverse=True))
    # Not after a word, `.`, `:` or `/`: leaves gs://bucket/x, https://host/x and a/b/c alone.
    return re.compile(rf"(?<![\w.:/~-])/(?:{alternatives})(?![\w.-])[^\s'\"`<>,;()\[\]{{}}]*")


def public_text(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` as a caller may see it: no server paths (their last part stays), no lone surrogates, cut."""
    if not text.isascii() and _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "/" in text:
        text = _server_path().sub(lambda found: "<server>/" + found[0].rstrip("/").rsplit("/", 1)[-1], text)
    return clip(text, limit)


def _public(value: Any, limit: int = ECHO_LIMIT) -> Any:
    """Any JSON value with every string made public and every list bounded."""
    if isinstance(value, str):
        return public_text(value, limit)
    if isinstance(value, dict):
        return {public_text(str(key)): _public(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = [_public(item) for item in value[:LIST_LIMIT]]
        if len(value) > LIST_LIMIT:
            items.append(f"... ({len(value) - LIST_LIMIT} more)")
        return items
    return value


def new_error_id() -> str:
    """A short random id that ties an error body to the log lines about it."""
    return secrets.token_hex(6)


def error_body(error_type: str, message: str, **fields: Any) -> dict[str, Any]:
    """The contract's whole error response, `{"status": "error", "error": {...}}`, made public."""
    error: dict[str, Any] = {"type": error_type, "message": public_text(message, MESSAGE_LIMIT)}
    error.update({key: _public(value) for key, value in fields.items() if value is not None})
    return {"status": "error", "error": error}


class WorkerError(Exception):
    """Base of every error the worker reports to a caller."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "worker_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, node_errors: dict[str, Any] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.node_errors = node_errors
        self.details = {k: v for k, v in details.items() if v is not None}
        self.id = new_error_id()

    def to_dict(self) -> dict[str, Any]:
        """The contract's `error` object: type, message, id, and node_errors / details when known."""
        return self.to_body()["error"]  # type: ignore[no-any-return]

    def to_body(self) -> dict[str, Any]:
        """The contract's whole error response: `{"status": "error", "error": {...}}`."""
        return error_body(
            self.error_type, self.message, id=self.id, node_errors=self.node_errors or None, **self.details
        )


class RequestError(WorkerError):
    """The caller's mistake: the message says what to change."""

    status_code = 400
    error_type = "invalid_request"


class InvalidJSON(RequestError):
    error_type = "invalid_json"


class InvalidRequest(RequestError):
    status_code = 422
    error_type = "invalid_request"


class UIFormatWorkflow(InvalidRequest):
    error_type = "ui_format_workflow"


class InvalidInput(RequestError):
    error_type = "invalid_input"


class InputNotFound(InvalidInput):
    status_code = 404
    error_type = "not_found"


class WorkflowInvalid(RequestError):
    error_type = "workflow_invalid"


class UnknownNode(WorkflowInvalid):
    error_type = "unknown_node"


class MissingModel(WorkflowInvalid):
    error_type = "missing_model"


class Unauthorized(RequestError):
    status_code = 401
    error_type = "unauthorized"


class AccessDenied(RequestError):
    status_code = 403
    error_type = "access_denied"


class PayloadTooLarge(RequestError):
    status_code = 413
    error_type = "payload_too_large"


class QueueFull(RequestError):
    status_code = 429
    error_type = "queue_full"


class Cancelled(RequestError):
    """The caller cancelled the request (an async one, through its outbox's cancel.json): it never ran,
    or its prompt was stopped. Finished, not retried: the caller asked for it."""

    status_code = 409
    error_type = "cancelled"


class ExecutionFailed(WorkerError):
    error_type = "execution_error"


class RunTimeout(WorkerError):
    status_code = 504
    error_type = "timeout"


class ComfyUnavailable(WorkerError):
    status_code = 503
    error_type = "comfyui_unavailable"
    retryable = True


class ComfyCrashed(ComfyUnavailable):
    status_code = 502
    error_type = "comfyui_crashed"


class ShuttingDown(WorkerError):
    """The instance got SIGTERM: queued and new requests are refused at once, a run past the grace stopped."""

    status_code = 503
    error_type = "shutting_down"
    retryable = True


class StorageError(WorkerError):
    status_code = 502
    error_type = "storage_error"
    retryable = True


class ConfigurationError(WorkerError):
    error_type = "configuration_error"
