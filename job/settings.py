"""The worker's configuration: read once from the environment at the edge, then passed down frozen.

Every field's environment variable is its name in upper case (`comfyui_dir` is `COMFYUI_DIR`).
`docs/configuration.md` lists each one; a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    comfyui_url: str | None = None  # attach to a running ComfyUI instead of starting one
    comfyui_host: str = "127.0.0.1"
    comfyui_port: int = Field(8188, ge=1, le=65535)
    comfyui_args: str = ""  # extra arguments for ComfyUI's main.py, split like a shell
    comfyui_boot_timeout_s: float = Field(300.0, gt=0)
    comfyui_restart: bool = True  # restart a ComfyUI child that crashed
    run_timeout_s: float = Field(900.0, gt=0)  # deadline of a run whose request names none
    history_poll_s: float = Field(1.0, gt=0)  # /history polling, the safety net under the websocket
    log_format: Literal["auto", "json", "text"] = "auto"

    # --- Where outputs go and what the image carries ---
    google_cloud_project: str | None = None  # project for GCS clients; None lets the library find it
    model_type: str = "base"
    outbox_bucket: str = "outbox"
    webhook_secret: str | None = None

    # --- The /predict service ---
    port: int = Field(8080, ge=1, le=65535)
    api_token: str | None = None
    max_queue_depth: int = Field(4, ge=1)
    max_body_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    warmup_workflow: str | None = None

    @property
    def comfyui_base_url(self) -> str:
        """The address the client talks to, whether ComfyUI is our child or attached."""
        if self.comfyui_url:
            return self.comfyui_url.rstrip("/")
        return f"http://{self.comfyui_host}:{self.comfyui_port}"


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, naming the variable in any error."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors())
        raise ConfigurationError(f"invalid configuration: {problems}") from None
