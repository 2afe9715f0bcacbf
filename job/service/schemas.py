"""Response models: what the OpenAPI schema at /openapi.json (and the docs at /docs) describes.

The request model is `job.engine.request.WorkflowRequest`, shared with the job and the CLI.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Machine-readable cause, e.g. workflow_invalid, timeout, queue_full.")
    message: str = Field(description="What went wrong and what to change.")
    id: str | None = Field(None, description="This error's id in the service's logs, which hold its details.")
    node_errors: dict[str, Any] | None = Field(None, description="Per-node errors, keyed by node id.")


class ErrorResponse(BaseModel):
    """Every error: 4xx for the caller's mistakes, 5xx and 504 for the worker's."""

    status: Literal["error"]
    error: ErrorDetail


class ImageOutput(BaseModel):
    """A still image, in the seed's shape; `image` (base64) or, with output.return "uri", `uri`."""

    model_config = ConfigDict(extra="allow")

    filename: str
    subfolder: str
    type: str
    node_id: str | None = None
    content_type: str | None = None
    size: int | None = None
    image: str | None = Field(None, description="Base64 bytes (output.return: base64).")
    uri: str | None = Field(None, description="gs:// URI in the outbox (output.return: uri).")


class FileOutput(BaseModel):
    """Any other output: video, animation, audio, text."""

    model_config = ConfigDict(extra="allow")

    node_id: str
    filename: str
    content_type: str
    subfolder: str | None = None
    type: str | None = None
    size: int | None = None
    data: str | None = Field(None, description="Base64 bytes (output.return: base64).")
    uri: str | None = Field(None, description="gs:// URI in the outbox (output.return: uri).")


class Timings(BaseModel):
    queue_s: float = Field(description="From queueing to the start of execution in ComfyUI.")
    execution_s: float = Field(description="ComfyUI's execution time.")
    total_s: float = Field(description="The whole run as the worker saw it.")


class PredictResponse(BaseModel):
    """The sync response (docs/api.md section 3)."""

    status: Literal["success"]
    prompt_id: str
    images: list[ImageOutput]
    files: list[FileOutput]
    outputs: dict[str, Any] = Field(description="ComfyUI's raw history outputs, by node id.")
    timings: Timings
    id: str | None = Field(None, description="The request's `id`, echoed back.")


class AsyncAccepted(BaseModel):
    """An async request, written to the inbox; poll `status_url`."""

    status: Literal["queued"]
    id: str
    status_url: str = Field(
        description="Where to poll: PUBLIC_URL (or a trusted proxy's X-Forwarded-Host) + /status/<id>, else relative."
    )


class AsyncStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "success", "error"]
    state: str | None = Field(None, description="The job's own finer state while running.")
    progress: dict[str, Any] | None = Field(None, description="Node and step progress while running.")
    result: dict[str, Any] | None = Field(None, description="result.json once finished (gs:// URIs, no base64).")
    error: ErrorDetail | None = None


class ServiceInfo(BaseModel):
    service: str
    version: str
    comfyui_version: str | None = Field(None, description="From ComfyUI's /system_stats; null while it is down.")
    model_type: str
    ready: bool
    detail: str | None = Field(None, description="Why the service is not ready (as /healthz says); null when it is.")
    comfyui: str = Field(description="ComfyUI's state: starting, ready, restarting, failed, ...")
    warmup: str = Field(description="none, pending, running, done or failed")
    queued: int = Field(description="Requests admitted now, waiting or running.")
    max_queue_depth: int = Field(description="Beyond this many, POST /predict answers 429 (MAX_QUEUE_DEPTH).")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    comfyui: str
    warmup: str
    detail: str | None = None


class ModelList(BaseModel):
    models: dict[str, list[str]] = Field(description="File names by model folder (checkpoints, loras, vae, ...).")
    loaders: dict[str, dict[str, str]] = Field(description="Which folder each loader node's input reads from.")
