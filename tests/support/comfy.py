"""A real ComfyUI for tests: installed once, booted on a free port with its own base directory."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from job.comfyui.install import install_comfyui
from job.dev.gcs_emulator import free_port
from job.settings import Settings, load_settings


def comfy_settings(base_dir: Path, **overrides: Any) -> Settings:
    """Settings for a ComfyUI child on a free port, keeping models/input/output under `base_dir`."""
    comfyui_dir = Path(os.environ["COMFYUI_DIR"]) if os.environ.get("COMFYUI_DIR") else load_settings().comfyui_dir
    install_comfyui(comfyui_dir)
    (base_dir / "models").mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "comfyui_dir": comfyui_dir,
        "comfyui_port": free_port(),
        "comfyui_args": f"--base-directory {base_dir} --disable-all-custom-nodes --disable-api-nodes",
        "comfy_log_level": "INFO",
        "history_poll_s": 0.5,
        "websocket_reconnect_delay_s": 0.2,
        "comfyui_boot_timeout_s": 120,
        "log_format": "text",
    }
    values.update(overrides)
    return Settings(**values)


def png_bytes(size: tuple[int, int] = (32, 24), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def invert_workflow(image_name: str = "input.png", prefix: str = "inverted") -> dict[str, Any]:
    """LoadImage -> ImageInvert -> SaveImage: consumes an uploaded input."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def empty_image_workflow(
    size: int = 64, batch: int = 1, prefix: str = "empty", color: int = 0xFF8000
) -> dict[str, Any]:
    """EmptyImage -> SaveImage: the smallest model-free graph."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": batch, "color": color},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def slow_workflow(blurs: int = 40, size: int = 1024, prefix: str = "slow") -> dict[str, Any]:
    """A chain of big blurs: seconds of CPU work that ComfyUI can interrupt between nodes."""
    graph: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": 0}}
    }
    previous = "1"
    for index in range(blurs):
        node = str(index + 2)
        graph[node] = {"class_type": "ImageBlur", "inputs": {"image": [previous, 0], "blur_radius": 31, "sigma": 8.0}}
        previous = node
    graph[str(blurs + 2)] = {"class_type": "SaveImage", "inputs": {"images": [previous, 0], "filename_prefix": prefix}}
    return graph
