"""Every error the service answers, in the contract's shape: `{"status": "error", "error": {...}}`.

Ours (WorkerError) carry their status; FastAPI's request validation, Starlette's 404/405 and any
unexpected exception are rendered in the same shape, so a client parses one kind of error. Bodies
come from job/errors.py's one renderer (no traceback, no server path, values cut short); what they
leave out is logged here, on a line that carries the body's `error.id`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from job.errors import (
    MESSAGE_LIMIT,
    ComfyUnavailable,
    InvalidRequest,
    QueueFull,
    ShuttingDown,
    Unauthorized,
    WorkerError,
    clip,
    error_body,
    new_error_id,
)

log = logging.getLogger(__name__)

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 406: "not_acceptable", 415: "unsupported_media_type"}
_COMFY_RETRY_AFTER_S = "10"
_SHUTDOWN_RETRY_AFTER_S = "1"  # another instance takes it: Cloud Run routes the retry elsewhere


def error_response(exc: WorkerError) -> JSONResponse:
    """The JSON response for one of our errors, with the headers its status calls for."""
    headers: dict[str, str] = {}
    if isinstance(exc, QueueFull):
        headers["Retry-After"] = str(exc.details.get("retry_after_s", 1))
    elif isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, ComfyUnavailable):
        headers["Retry-After"] = _COMFY_RETRY_AFTER_S
    elif isinstance(exc, ShuttingDown):
        headers["Retry-After"] = _SHUTDOWN_RETRY_AFTER_S
        headers["Connection"] = "close"
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


def log_error(request: Request | None, exc: WorkerError) -> None:
    """One line per answered error, under its id; the message cut short (it may echo a caller's megabytes)."""
    level = logging.ERROR if exc.status_code >= 500 else logging.INFO
    if isinstance(exc, ShuttingDown):
        level = logging.WARNING  # an instance being stopped is routine, not a fault
    where = f"{request.method} {request.url.path}: " if request is not None else ""
    log.log(
        level,
        "%s%s %s [error %s]: %s",
        where,
        exc.status_code,
        exc.error_type,
        exc.id,
        clip(exc.message, MESSAGE_LIMIT),
        extra={"fields": {"status_code": exc.status_code, "error_type": exc.error_type, "error_id": exc.id}},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WorkerError, _worker_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _worker_error(request: Request, exc: WorkerError) -> JSONResponse:
    log_error(request, exc)
    return error_response(exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The messages only: pydantic's `input` would echo the caller's data (base64 included) back.
    problems = "; ".join(
        f"`{'.'.join(str(part) for part in err.get('loc', ())) or '(request)'}`: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    )
    return await _worker_error(request, InvalidRequest(f"the request is invalid: {problems}"))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    error_type = _HTTP_TYPES.get(exc.status_code, "http_error")
    body = error_body(error_type, f"{request.method} {request.url.path}: {exc.detail}")
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    error_id = new_error_id()
    log.exception(
        "%s %s failed unexpectedly [error %s]",
        request.method,
        request.url.path,
        error_id,
        extra={"fields": {"status_code": 500, "error_type": "internal_error", "error_id": error_id}},
    )
    body = error_body(
        "internal_error", f"an unexpected error; the service logs have it as error {error_id}", id=error_id
    )
    return JSONResponse(body, status_code=500)
