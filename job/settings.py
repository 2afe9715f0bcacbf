"""The worker's configuration: read once from the environment at the edge, then passed down frozen.

Every field's environment variable is its name in upper case (`comfyui_dir` is `COMFYUI_DIR`).
`docs/configuration.md` lists each one; a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from job.comfyui.config import ComfyConfig
from job.errors import ConfigurationError


def default_comfyui_dir() -> Path:
    """Where `worker-comfyui comfyui install` puts ComfyUI when COMFYUI_DIR is unset."""
    from job.comfyui.pins import PINS

    return Path.home() / ".cache" / "worker-comfyui" / f"ComfyUI-{PINS.comfyui}"


class Settings(BaseSettings):
    """All settings, with defaults that work on a laptop."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    # --- The seed's four (names and defaults kept) ---
    comfy_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "DEBUG"
    websocket_reconnect_attempts: int = Field(5, ge=0)
    websocket_reconnect_delay_s: float = Field(3.0, ge=0)
    websocket_trace: bool = False

    # --- ComfyUI process and client ---
    comfyui_dir: Path = Field(default_factory=default_comfyui_dir)
    comfyui_archive: Path | None = None  # a ComfyUI release tarball for `comfyui install` when GitHub is out of reach
    comfyui_url: str | None = None  # attach to a running ComfyUI instead of starting one
    comfyui_host: str = "127.0.0.1"
    comfyui_port: int = Field(8188, ge=1, le=65535)
    comfyui_args: str = ""  # extra arguments for ComfyUI's main.py, split like a shell
    comfyui_boot_timeout_s: float = Field(300.0, gt=0)
    comfyui_restart: bool = True  # restart a ComfyUI child that crashed
    keep_outputs: bool = False  # debugging: leave a ComfyUI child's output files on disk after they are read
    allow_output_inputs: bool = False  # trusted callers only: LoadImageOutput and nodes that read files by path
    run_timeout_s: float = Field(900.0, gt=0)  # deadline of a run whose request names none
    history_poll_s: float = Field(1.0, gt=0)  # /history polling, the safety net under the websocket
    log_format: Literal["auto", "json", "text"] = "auto"

    # --- Where outputs go and what the image carries ---
    google_cloud_project: str | None = None  # project for GCS clients; None lets the library find it
    model_type: str = "base"
    # Models beyond the image's (job/comfyui/model_sync.py; docs/customization.md compares the two):
    models_uri: str | None = None  # gs://bucket/prefix or a folder, copied into COMFYUI_DIR/models at boot
    models_mount: Path | None = None  # a mounted Cloud Storage volume, mapped with extra_model_paths.yaml
    models_download_workers: int = Field(16, ge=1, le=256)  # parallel downloads for MODELS_URI
    outbox_bucket: str = "outbox"
    webhook_secret: str | None = None

    # --- The job (`worker-comfyui job`): one inbox item per task; the trigger sets the first two ---
    request_uri: str | None = None  # gs://INBOX/name.json#generation, or a local path for local runs
    outbox_uri: str | None = None  # gs://OUTBOX/<prefix><name>/; unset: derived from REQUEST_URI (docs)
    batch_uri: str | None = None  # a batch spec, gs://bucket/name.batch.json[#generation] or a path (docs/batch.md)
    cloud_run_execution: str | None = None  # set by Cloud Run; recorded in result.json
    cloud_run_task_index: int = Field(0, ge=0)  # set by Cloud Run
    cloud_run_task_count: int = Field(1, ge=1)  # set by Cloud Run
    cloud_run_task_attempt: int = Field(0, ge=0)  # set by Cloud Run; 0 on the first try
    job_max_retries: int = Field(3, ge=0)  # the job's --max-retries: its last attempt writes an error result.json
    status_interval_s: float = Field(0.34, ge=0)  # least time between two progress writes of status.json
    cancel_poll_s: float = Field(2.0, gt=0)  # how often a running inbox item looks for its cancel.json
    webhook_attempts: int = Field(5, ge=1, le=20)  # tries per webhook delivery (with backoff)
    webhook_timeout_s: float = Field(60.0, gt=0)  # the whole delivery, all tries together
    # Draining (job/items/drain.py, docs/drain.md): a warm task runs further pending inbox items after its own.
    drain: bool = False  # the drain sweep: no item of its own; exits before booting ComfyUI when none is pending
    drain_max_items: int = Field(50, ge=1)  # items per task, its own included; 1 turns draining off
    drain_max_seconds: float = Field(2400.0, gt=0)  # claim no further item after this long: the task timeout less a run
    drain_grace_s: float = Field(10.0, ge=0)  # once nothing is pending, how long to keep looking before exiting
    drain_lease_s: float = Field(120.0, gt=0)  # a drained item's claim lease, renewed while it runs
    claims_prefix: str = "_claims/"  # the trigger's CLAIMS_PREFIX: claims in INBOX_BUCKET

    # --- The /predict service ---
    port: int = Field(8080, ge=1, le=65535)
    api_token: str | None = None
    public_docs: bool = False  # with API_TOKEN: /docs, /redoc and /openapi.json answer without it
    public_url: str | None = Field(None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")  # base of status_url
    # The RunPod-compatible routes (docs/api.md section 12) answer under this endpoint id only; unset: under any.
    runpod_endpoint_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    trust_proxy_headers: bool = False  # status_url from X-Forwarded-Host/Proto (a proxy we trust sets them)
    shutdown_grace_s: float = Field(7.0, gt=0, le=3600)  # after SIGTERM, how long the running request may finish
    max_queue_depth: int = Field(4, ge=1)
    max_body_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    warmup_workflow: str | None = None  # a path or gs:// URI run once before /healthz says 200
    inbox_bucket: str = "inbox"  # async /predict writes its request to gs://INBOX/async/<id>.json
    outbox_prefix: str = ""  # the trigger's OUTBOX_PREFIX: /status reads gs://OUTBOX/<prefix>async/<id>/
    # Inputs by reference (job/engine/fetch.py), for the service and the job alike:
    input_max_bytes: int = Field(100 * 1024 * 1024, ge=1)  # largest https:// or gs:// input
    input_fetch_timeout_s: float = Field(60.0, gt=0)  # the whole fetch of one input, redirects included
    allow_private_input_urls: bool = False  # local tests only: http:// and private/loopback hosts
    # Every outbound URL (job/engine/outbound.py: inputs, webhooks); ALLOW_PRIVATE_INPUT_URLS is its alias:
    allow_private_urls: bool = False  # local tests only: http:// and private/loopback hosts, for inputs and webhooks

    def comfyui(self) -> ComfyConfig:
        """What the ComfyUI driver (ComfyServer and its Runner) reads, and nothing else."""
        return ComfyConfig(
            dir=self.comfyui_dir,
            url=self.comfyui_url,
            host=self.comfyui_host,
            port=self.comfyui_port,
            args=self.comfyui_args,
            boot_timeout_s=self.comfyui_boot_timeout_s,
            restart=self.comfyui_restart,
            log_level=self.comfy_log_level,
            models_mount=self.models_mount,
            reconnect_attempts=self.websocket_reconnect_attempts,
            reconnect_delay_s=self.websocket_reconnect_delay_s,
            websocket_trace=self.websocket_trace,
            history_poll_s=self.history_poll_s,
            run_timeout_s=self.run_timeout_s,
            keep_outputs=self.keep_outputs,
            allow_output_inputs=self.allow_output_inputs,
        )


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, naming the variable in any error."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors())
        raise ConfigurationError(f"invalid configuration: {problems}") from None
