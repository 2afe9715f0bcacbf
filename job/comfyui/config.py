"""What the ComfyUI driver reads: where ComfyUI lives, how to start it, and how runs follow it.

`Settings.comfyui()` builds it from the worker's settings (job/settings.py), the one place that
reads the environment; `ComfyServer` and the `Runner` on it read nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


@dataclass(frozen=True)
class ComfyConfig:
    """The driver's configuration, each field from one environment variable (docs/configuration.md):

    ===================  ============================  ==============================================
    field                variable                      what it is
    ===================  ============================  ==============================================
    dir                  COMFYUI_DIR                   the ComfyUI tree (main.py, models/)
    url                  COMFYUI_URL                   attach to this ComfyUI instead of starting one
    host                 COMFYUI_HOST                  our child's listen address
    port                 COMFYUI_PORT                  our child's port
    args                 COMFYUI_ARGS                  extra arguments for main.py, split like a shell
    boot_timeout_s       COMFYUI_BOOT_TIMEOUT_S        how long a boot may take before it failed
    restart              COMFYUI_RESTART               restart a child that crashed
    log_level            COMFY_LOG_LEVEL               the child's --verbose level
    models_mount         MODELS_MOUNT                  a mounted models volume (extra_model_paths.yaml)
    reconnect_attempts   WEBSOCKET_RECONNECT_ATTEMPTS  websocket reconnects before polling alone
    reconnect_delay_s    WEBSOCKET_RECONNECT_DELAY_S   the pause between two reconnects
    websocket_trace      WEBSOCKET_TRACE               log every websocket frame
    history_poll_s       HISTORY_POLL_S                /history polling, the net under the websocket
    run_timeout_s        RUN_TIMEOUT_S                 the deadline of a run that names none
    keep_outputs         KEEP_OUTPUTS                  leave a child's output files on disk once read
    allow_output_inputs  ALLOW_OUTPUT_INPUTS           let workflows read files beyond their own
    ===================  ============================  ==============================================
    """

    dir: Path
    url: str | None
    host: str
    port: int
    args: str
    boot_timeout_s: float
    restart: bool
    log_level: LogLevel
    models_mount: Path | None
    reconnect_attempts: int
    reconnect_delay_s: float
    websocket_trace: bool
    history_poll_s: float
    run_timeout_s: float
    keep_outputs: bool = False  # for debugging: a managed child's outputs are otherwise deleted once read
    allow_output_inputs: bool = False  # LoadImageOutput, path-taking nodes: for trusted callers only

    @property
    def base_url(self) -> str:
        """The address the client talks to, whether ComfyUI is our child or attached."""
        if self.url:
            return self.url.rstrip("/")
        return f"http://{self.host}:{self.port}"
