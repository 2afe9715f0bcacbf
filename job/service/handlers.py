"""Every error the service answers, in the contract's shape: `{"status": "error", "error": {...}}`.

Ours (WorkerError) carry their status; FastAPI's request validation, Starlette's 404/405 and any
unexpected exception are rendered in the same shape, so a client parses one kind of error.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from job.errors import ComfyUnavailable, InvalidRequest, QueueFull, Unauthorized, WorkerError

log = logging.getLogger(__name__)

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 406: "not_acceptable", 415: "unsupported_media_type"}
_COMFY_RETRY_AFTER_S = "10"


def error_response(exc: WorkerError) -> JSONResponse:
    """The JSON response for one of our errors, with the headers its status calls for."""
    headers: dict[str, str] = {}
    if isinstance(exc, QueueFull):
        headers["Retry-After"] = str(exc.details.get("retry_after_s", 1))
    elif isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, ComfyUnavailable):
        headers["Retry-After"] = _COMFY_RETRY_AFTER_S
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WorkerError, _worker_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _worker_error(request: Request, exc: WorkerError) -> JSONResponse:
    level = logging.ERROR if exc.status_code >= 500 else logging.INFO
    log.log(
        level,
        "%s %s: %s %s: %s",
        request.method,
        request.url.path,
        exc.status_code,
        exc.error_type,
        exc.message,
        extra={"fields": {"status_code": exc.status_code, "error_type": exc.error_type}},
    )
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
    body = {
        "status": "error",
        "error": {"type": error_type, "message": f"{request.method} {request.url.path}: {exc.detail}"},
    }
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed unexpectedly", request.method, request.url.path)
    body = {
        "status": "error",
        "error": {"type": "internal_error", "message": "an unexpected error; see the service logs"},
    }
    return JSONResponse(body, status_code=500)
