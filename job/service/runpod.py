"""RunPod's serverless job API beside ours, so RunPod's clients work by changing their base URL.

    POST /{endpoint_id}/runsync          a sync /predict (the same admission, the same core)
    POST /{endpoint_id}/run              an async request (the inbox, the job, the outbox)
    GET  /{endpoint_id}/status/{job_id}  our async states as RunPod's
    POST /{endpoint_id}/cancel/{job_id}  cancel.json in the request's outbox folder (job/items/cancel.py)
    GET  /{endpoint_id}/health           the instance's queue as RunPod's counts

The body is RunPod's `{"input": {...}, "webhook", "policy"}`, which the one parser
(job/engine/documents.py) turns into our request; the answers are RunPod's job documents
(docs/api.md section 12). Nothing here runs a workflow: runsync calls the Predictor that /predict
calls, run the AsyncRequests that /predict's async path writes with.

A request that cannot become a job (not JSON, no `input`, a document the parser refuses) gets our
4xx, as RunPod answers a malformed request with 400; so does a full queue (429, which RunPod's client
retries) and any error worth retrying elsewhere (503, 502). A job that ran and failed is a
`FAILED`, `TIMED_OUT` or `CANCELLED` document, HTTP 200, as RunPod reports a failed job.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Path, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from job.engine.documents import RUNPOD_FIELDS, parse_json
from job.engine.request import WorkflowRequest, parse_request
from job.errors import Cancelled, InputNotFound, InvalidRequest, QueueFull, RunTimeout, WorkerError, clip
from job.logs import request_context
from job.service.admission import QueueGate
from job.service.async_requests import ID_PATTERN, AsyncRequests
from job.service.health import Health
from job.service.limits import read_body
from job.service.predict import Predictor
from job.service.schemas import ErrorResponse

log = logging.getLogger(__name__)

CLOSED_BY_CLIENT = 499  # as /predict answers a caller that left
Status = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]
# Our error types that have a RunPod status of their own; any other error is FAILED.
_ERROR_STATUS: Mapping[str, Status] = {Cancelled.error_type: "CANCELLED", RunTimeout.error_type: "TIMED_OUT"}
_ASYNC_STATUS: Mapping[str, Status] = {"queued": "IN_QUEUE", "running": "IN_PROGRESS", "success": "COMPLETED"}


class RunPodJob(BaseModel):
    """RunPod's job document (times in ms); `output` is our success body in RunPod's image shape."""

    id: str
    status: Status
    output: dict[str, Any] | None = Field(
        None, description="Our success body (error body on failure); images[]/files[] carry `type` and `data`."
    )
    error: str | None = Field(None, description="On FAILED, TIMED_OUT, CANCELLED: the error's message.")
    delayTime: int | None = Field(None, description="ms the worker spent on the request outside ComfyUI's execution.")  # noqa: N815
    executionTime: int | None = Field(None, description="ms of ComfyUI's execution.")  # noqa: N815


class RunPodHealth(BaseModel):
    """RunPod's health document, counted on this instance."""

    jobs: dict[str, int]
    workers: dict[str, int]


_BODY = {
    "requestBody": {
        "required": True,
        "description": "RunPod's job body: `input` is the request document (docs/api.md section 2).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["input"],
                    "properties": {
                        "input": {"$ref": "#/components/schemas/WorkflowRequest"},
                        "webhook": {"type": "string", "description": "Gets the result, as our `webhook`."},
                        "policy": {
                            "type": "object",
                            "properties": {"executionTimeout": {"type": "integer", "minimum": 1}},
                        },
                        "s3Config": {"type": "object", "description": "Accepted and ignored."},
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 429, 500, 502, 503)
}
_ENDPOINT_ID = Path(pattern=ID_PATTERN, max_length=128, description="Any id (RUNPOD_ENDPOINT_ID, when set).")
_TAGS: list[str | Enum] = ["RunPod-compatible"]
_JOB_ID = Path(pattern=ID_PATTERN, max_length=128, description="The `id` of `run`'s answer.")


def add_runpod_routes(
    app: FastAPI,
    *,
    endpoint_id: str | None,
    predictor: Predictor,
    async_requests: AsyncRequests,
    gate: QueueGate,
    health: Health,
    dependencies: list[Depends],
) -> None:
    """The five routes on `app`, guarded as its own (`dependencies`: the API_TOKEN bearer check).

    On the app itself rather than an included APIRouter: FastAPI keeps an included router as one
    entry of `app.routes`, and the contract's route check (tests/docs) reads the app's routes."""
    check_endpoint = _endpoint_check(endpoint_id)
    job_route: dict[str, Any] = {
        "response_model": RunPodJob,
        "response_model_exclude_none": True,
        "responses": _ERRORS,
        "dependencies": dependencies,
        "tags": _TAGS,
    }

    @app.post(
        "/{endpoint_id}/runsync",
        **job_route,
        openapi_extra=_BODY,
        summary="RunPod: run and wait (a sync /predict)",
    )
    async def runsync(request: Request, endpoint_id: str = _ENDPOINT_ID) -> Response:
        check_endpoint(endpoint_id)
        try:
            parsed = await _parse(request)
        except ClientDisconnect:
            return Response(status_code=CLOSED_BY_CLIENT)
        job_id = f"sync-{uuid.uuid4()}"
        started = time.monotonic()
        with request_context(parsed.id or job_id):
            try:
                rendered = await predictor.answer(request, parsed)
            except WorkerError as exc:
                if exc.retryable or isinstance(exc, QueueFull):
                    raise  # our 429/502/503 with Retry-After: another try (or instance) may take it
                return _job_response(failed_job(job_id, exc.to_body()))
            if rendered is None:
                return Response(status_code=CLOSED_BY_CLIENT)
        body = orjson.loads(rendered)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        return _job_response(completed_job(job_id, body, elapsed_ms=elapsed_ms))

    @app.post(
        "/{endpoint_id}/run",
        **job_route,
        openapi_extra=_BODY,
        summary="RunPod: queue a job (an async request through the inbox)",
    )
    async def run(request: Request, endpoint_id: str = _ENDPOINT_ID) -> Response:
        check_endpoint(endpoint_id)
        try:
            parsed = await _parse(request)
        except ClientDisconnect:
            return Response(status_code=CLOSED_BY_CLIENT)
        job_id = await asyncio.to_thread(async_requests.submit, parsed)
        log.info("RunPod job %s written to the inbox", job_id)
        return _job_response({"id": job_id, "status": "IN_QUEUE"})

    @app.get(
        "/{endpoint_id}/status/{job_id}",
        **job_route,
        summary="RunPod: a job's status and output",
    )
    async def status(endpoint_id: str = _ENDPOINT_ID, job_id: str = _JOB_ID) -> Response:
        check_endpoint(endpoint_id)
        return _job_response(await asyncio.to_thread(_async_job, async_requests, job_id))

    @app.post(
        "/{endpoint_id}/cancel/{job_id}",
        **job_route,
        summary="RunPod: cancel a job (a queued one never runs, a running one is stopped)",
    )
    async def cancel(endpoint_id: str = _ENDPOINT_ID, job_id: str = _JOB_ID) -> Response:
        check_endpoint(endpoint_id)

        def cancel_and_read() -> dict[str, Any]:
            async_requests.cancel(job_id)
            return _async_job(async_requests, job_id)

        return _job_response(await asyncio.to_thread(cancel_and_read))

    @app.get(
        "/{endpoint_id}/health",
        response_model=RunPodHealth,
        responses=_ERRORS,
        dependencies=dependencies,
        tags=_TAGS,
        summary="RunPod: this instance's jobs and worker",
    )
    async def runpod_health(endpoint_id: str = _ENDPOINT_ID) -> dict[str, Any]:
        check_endpoint(endpoint_id)
        running = 1 if gate.running else 0
        return {
            "jobs": {"inQueue": max(gate.admitted - running, 0), "inProgress": running},
            "workers": {"idle": 1 if health.ready and not running else 0, "running": running},
        }


def _endpoint_check(expected: str | None) -> Callable[[str], None]:
    def check(endpoint_id: str) -> None:
        if expected is not None and endpoint_id != expected:
            raise InputNotFound(f"no RunPod endpoint {clip(endpoint_id)!r} here; this service's is RUNPOD_ENDPOINT_ID")

    return check


async def _parse(request: Request) -> WorkflowRequest:
    """RunPod's body, parsed by the one parser; InvalidRequest unless it is RunPod's envelope."""
    raw = await read_body(request)

    def parse() -> WorkflowRequest:
        doc = parse_json(raw)
        if not isinstance(doc, dict) or "input" not in doc:
            raise InvalidRequest(
                'RunPod\'s API takes `{"input": {"workflow": <API-format workflow>, "images": [...]}}` '
                f"(top-level fields: {', '.join(RUNPOD_FIELDS)}); for this worker's own document use POST /predict"
            )
        return parse_request(doc)

    return await asyncio.to_thread(parse)


def _job_response(job: dict[str, Any]) -> JSONResponse:
    return JSONResponse({key: value for key, value in job.items() if value is not None})


def runpod_output(body: Mapping[str, Any]) -> dict[str, Any]:
    """Our success body with each `images` and `files` entry in RunPod's worker-comfyui shape:
    `type` "base64" (`data`: the bytes) or "uri" (`data`: the gs:// URI); the rest as in ours
    (ComfyUI's folder type, always "output" there, is what `type` held)."""
    output = dict(body)
    for key in ("images", "files"):
        entries = []
        for entry in body.get(key) or []:
            converted = {name: value for name, value in entry.items() if name not in ("image", "data", "uri", "type")}
            if "uri" in entry:
                converted.update(type="uri", data=entry["uri"])
            else:
                converted.update(type="base64", data=entry.get("image", entry.get("data")))
            entries.append(converted)
        output[key] = entries
    return output


def completed_job(job_id: str, body: Mapping[str, Any], *, elapsed_ms: int | None = None) -> dict[str, Any]:
    """COMPLETED: our success body (or result.json) as `output`, with RunPod's times."""
    timings = body.get("timings") or {}
    execution_ms = round(float(timings.get("execution_s") or 0) * 1000)
    if elapsed_ms is None:  # an async one: the job's own time (result.json's job_s)
        elapsed_ms = round(float(timings.get("job_s") or timings.get("total_s") or 0) * 1000)
    return {
        "id": job_id,
        "status": "COMPLETED",
        "output": runpod_output(body),
        "delayTime": max(elapsed_ms - execution_ms, 0),
        "executionTime": execution_ms,
    }


def failed_job(job_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """FAILED, TIMED_OUT or CANCELLED by our error's type; `error` its message, `output` our error body."""
    error = body.get("error") or {}
    return {
        "id": job_id,
        "status": _ERROR_STATUS.get(str(error.get("type")), "FAILED"),
        "error": str(error.get("message") or "the request failed"),
        "output": {key: value for key, value in body.items() if key in ("status", "error", "id")},
    }


def _async_job(async_requests: AsyncRequests, job_id: str) -> dict[str, Any]:
    """An async request's state as RunPod's job document (blocking: storage reads)."""
    state = async_requests.status(job_id)
    result = state.get("result")
    if state["status"] == "success" and isinstance(result, dict):
        return completed_job(job_id, result)
    if state["status"] == "error" and isinstance(result, dict):
        return failed_job(job_id, result)
    if async_requests.cancel_requested(job_id):  # the job stops it and records `cancelled`
        return {"id": job_id, "status": "CANCELLED"}
    return {"id": job_id, "status": _ASYNC_STATUS[state["status"]]}
