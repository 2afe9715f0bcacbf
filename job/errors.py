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
    │   └── QueueFull                 429 queue_full
    ├── ExecutionFailed               500 execution_error        (a node raised while running)
    ├── RunTimeout                    504 timeout                (the deadline passed; ComfyUI was interrupted)
    ├── ComfyUnavailable              503 comfyui_unavailable    (retryable: not up, or not answering)
    │   └── ComfyCrashed              502 comfyui_crashed        (retryable: the process died mid-run)
    ├── StorageError                  502 storage_error          (retryable: GCS or disk failed us)
    └── ConfigurationError            500 configuration_error    (an environment variable is wrong)

`retryable` is what the job's exit code follows: a retryable error exits non-zero so Cloud Run
retries the task; anything else is a *finished* item with an error `result.json`.
"""

from __future__ import annotations

from typing import Any, ClassVar


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

    def to_dict(self) -> dict[str, Any]:
        """The contract's `error` object: type, message, and node_errors / details when known."""
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.node_errors:
            error["node_errors"] = self.node_errors
        error.update(self.details)
        return error

    def to_body(self) -> dict[str, Any]:
        """The contract's whole error response: `{"status": "error", "error": {...}}`."""
        return {"status": "error", "error": self.to_dict()}


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


class StorageError(WorkerError):
    status_code = 502
    error_type = "storage_error"
    retryable = True


class ConfigurationError(WorkerError):
    error_type = "configuration_error"
