"""The FastAPI app: routes that parse, call one function, and format; the work lives elsewhere.

GET  /               service information
GET  /healthz        200 once ComfyUI answers and the warm-up ran; 503 otherwise
POST /predict        the contract's request -> response (sync), or 202 (async)
GET  /models         what ComfyUI can load, by folder
GET  /status/{id}    an async request's state and result
     /{endpoint_id}/...  RunPod's serverless job API on the same code (job/service/runpod.py)

Around the routes, outermost first: ShutdownGuard (SIGTERM: job/service/shutdown.py), DocsGuard (the
token for the OpenAPI document and its pages), BodyLimit (MAX_BODY_BYTES).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from job.engine.request import WorkflowRequest, parse_json, parse_request
from job.engine.runner import Runner
from job.errors import WorkerError
from job.logs import request_context
from job.service.admission import QueueGate
from job.service.async_requests import ID_PATTERN, AsyncRequests
from job.service.auth import DocsGuard, bearer_guard
from job.service.catalog import list_models
from job.service.handlers import install_error_handlers
from job.service.health import Health
from job.service.limits import BodyLimit, read_body
from job.service.links import Links
from job.service.predict import Predictor
from job.service.runpod import add_runpod_routes
from job.service.schemas import AsyncAccepted, AsyncStatus, ErrorResponse, ModelList, PredictResponse, ServiceInfo
from job.service.schemas import Health as HealthModel
from job.service.shutdown import Shutdown, ShutdownGuard
from job.settings import Settings
from job.storage import Storages

log = logging.getLogger(__name__)

DESCRIPTION = """ComfyUI workflows over HTTP. Send an API-format workflow ("Export (API)") to `POST /predict`.

Auth: with API_TOKEN set, send `Authorization: Bearer <token>` (these pages take it as the cookie `api_token` too);
without it, rely on Cloud Run IAM."""
CLOSED_BY_CLIENT = 499  # nginx's code: nobody is there to read it
_INLINE_PARSE_BYTES = 64 * 1024

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 429, 500, 502, 503, 504)
}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 422, 500, 502, 503)
}
_NODE_SCHEMA = {
    "type": "object",
    "description": "One node of an API-format workflow.",
    "required": ["class_type"],
    "properties": {
        "class_type": {"type": "string", "minLength": 1, "description": "The node's class, e.g. KSampler."},
        "inputs": {"type": "object", "description": "Values, or [node_id, output_index] links."},
    },
}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "The contract's request document (a bare API-format workflow is accepted too).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WorkflowRequest"}}},
    }
}


def create_app(
    settings: Settings, runner: Runner, *, storages: Storages | None = None, shutdown: Shutdown | None = None
) -> FastAPI:
    """The service on a runner whose ComfyUI may still be booting; the warm-up starts with the app.

    `shutdown` is what `worker-comfyui serve` hands SIGTERM to; without one the app makes its own."""
    storages = storages or Storages(settings.google_cloud_project)
    shutdown = shutdown or Shutdown(settings.shutdown_grace_s)
    gate = QueueGate(settings.max_queue_depth, shutdown)
    health = Health(
        runner.server,
        warmup=bool(settings.warmup_workflow),
        shutdown=shutdown,
        finishing=lambda: runner.overruns.current(),  # ComfyUI still busy with a run that is over
    )
    predictor = Predictor(settings, runner, storages, gate, shutdown)
    async_requests = AsyncRequests(settings, storages)
    links = Links(settings.public_url, trust_proxy_headers=settings.trust_proxy_headers)
    versions: dict[int, str] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm = settings.warmup_workflow
        task = asyncio.create_task(predictor.keep_warm(warm, health)) if warm else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="worker-comfyui", version=_version(), description=DESCRIPTION, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.api_token and not settings.public_docs:
        docs = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
        app.add_middleware(DocsGuard, token=settings.api_token, paths=[path for path in docs if path])
    app.add_middleware(ShutdownGuard, shutdown=shutdown)  # added last: the outermost
    install_error_handlers(app)
    guarded = [Depends(bearer_guard(settings.api_token))] if settings.api_token else []

    @app.get(
        "/",
        response_model=ServiceInfo,
        responses={401: {"model": ErrorResponse}},
        dependencies=guarded,
        summary="Service information",
    )
    async def info() -> dict[str, Any]:
        report = health.report()
        return {
            "service": "worker-comfyui",
            "version": _version(),
            "comfyui_version": await comfyui_version(),
            "model_type": settings.model_type,
            "ready": report["status"] == "ok",
            "detail": report["detail"],
            "comfyui": runner.server.state.value,
            "warmup": health.warmup,
            "queued": gate.admitted,
            "max_queue_depth": gate.depth,
        }

    async def comfyui_version() -> str | None:
        generation = runner.server.generation
        if runner.server.ready and generation not in versions:
            try:
                stats = await asyncio.to_thread(runner.client.system_stats)
            except WorkerError:
                return None
            versions[generation] = str((stats.get("system") or {}).get("comfyui_version") or "unknown")
        return versions.get(generation)

    @app.get(
        "/healthz",
        response_model=HealthModel,
        responses={503: {"model": HealthModel}},
        summary="Readiness: 200 once ComfyUI answers and the warm-up ran",
    )
    async def healthz() -> JSONResponse:
        report = health.report()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @app.post(
        "/predict",
        response_model=None,
        responses={200: {"model": PredictResponse}, 202: {"model": AsyncAccepted}, **_ERRORS},
        openapi_extra=_PREDICT_BODY,
        dependencies=guarded,
        summary="Run a workflow",
    )
    async def predict(
        request: Request,
        prefer: str | None = Header(None, description="`respond-async` answers 202 at once, like `async: true`."),
    ) -> Response:
        try:
            raw = await read_body(request)
        except ClientDisconnect:
            return Response(status_code=CLOSED_BY_CLIENT)
        if len(raw) <= _INLINE_PARSE_BYTES:
            parsed = parse_request(parse_json(raw))
        else:  # megabytes of JSON would hold up every other request on the event loop
            parsed = await asyncio.to_thread(lambda: parse_request(parse_json(raw)))
        with request_context(parsed.id or uuid.uuid4().hex):
            if parsed.async_ or "respond-async" in (prefer or "").lower():
                request_id = await asyncio.to_thread(async_requests.submit, parsed)
                status_url = links.status_url(request.headers, request_id)
                log.info("async request %s written to the inbox", request_id)
                return JSONResponse(
                    {"status": "queued", "id": request_id, "status_url": status_url},
                    status_code=202,
                    headers={"Location": status_url, "Preference-Applied": "respond-async"},
                )
            rendered = await predictor.answer(request, parsed)
            if rendered is None:
                return Response(status_code=CLOSED_BY_CLIENT)
            return Response(rendered, media_type="application/json")

    @app.get(
        "/models", response_model=ModelList, responses=_READ_ERRORS, dependencies=guarded, summary="Loadable models"
    )
    async def models() -> dict[str, Any]:
        object_info = await asyncio.to_thread(runner.client.object_info, refresh=True)
        found, loaders = list_models(object_info)
        return {"models": found, "loaders": loaders}

    @app.get(
        "/status/{request_id}",
        name="status",
        response_model=AsyncStatus,
        response_model_exclude_none=True,
        responses=_READ_ERRORS,
        dependencies=guarded,
        summary="An async request's state and result",
    )
    async def status(request_id: str = Path(pattern=ID_PATTERN, max_length=128)) -> dict[str, Any]:
        return await asyncio.to_thread(async_requests.status, request_id)

    # Added last: our own routes match first (GET /status/{id} before /{endpoint_id}/health).
    add_runpod_routes(
        app,
        endpoint_id=settings.runpod_endpoint_id,
        predictor=predictor,
        async_requests=async_requests,
        gate=gate,
        health=health,
        dependencies=guarded,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request document, which /predict parses itself (to accept bare workflows)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        request_schema = WorkflowRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(request_schema.pop("$defs", {}))
        # What the parser checks of each node, spelt out for readers and the fuzzer.
        components["WorkflowNode"] = _NODE_SCHEMA
        request_schema["properties"]["workflow"].update(
            {"additionalProperties": {"$ref": "#/components/schemas/WorkflowNode"}, "minProperties": 1}
        )
        components["WorkflowRequest"] = request_schema
        app.openapi_schema = schema
    return app.openapi_schema


def _version() -> str:
    try:
        return metadata.version("worker-comfyui")
    except metadata.PackageNotFoundError:
        return "0+unknown"
