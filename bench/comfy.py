"""The ComfyUI a bench measures: a child on a free port with its own base directory, or one to attach to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from job.comfyui.process import ComfyServer
from job.devstack.gcs_emulator import free_port
from job.settings import Settings, load_settings


def bench_settings(base: Path, url: str | None = None, **overrides: object) -> Settings:
    """Settings for a quiet ComfyUI keeping models/input/output under `base` (or attached to `url`)."""
    (base / "models").mkdir(parents=True, exist_ok=True)
    return load_settings(
        comfyui_url=url,
        comfyui_port=free_port(),
        comfyui_args=f"--base-directory {base} --disable-all-custom-nodes",
        comfy_log_level="WARNING",
        **overrides,
    )


@contextmanager
def booted(settings: Settings) -> Iterator[ComfyServer]:
    """The server, started and ready; stopped on exit."""
    server = ComfyServer(settings.comfyui()).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
