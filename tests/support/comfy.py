"""A real ComfyUI for tests: installed once, booted on a free port with its own base directory."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from job.comfyui.install import install_comfyui, tree_version
from job.devstack.gcs_emulator import free_port
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


def expected_comfyui_version(settings: Settings) -> str:
    """The version the tests' ComfyUI must report: EXPECT_COMFYUI_VERSION (CI sets it per line), else
    the version its tree declares."""
    return os.environ.get("EXPECT_COMFYUI_VERSION") or tree_version(settings.comfyui_dir)


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


@dataclass(frozen=True)
class AudioSaver:
    """An audio output node and what its file must be: suffix, content type, codec as PyAV names it."""

    class_type: str
    suffix: str
    content_type: str
    codec: str
    inputs: dict[str, Any] = field(default_factory=dict)  # besides `audio` and `filename_prefix`
    lossless: bool = False

    def offered_by(self, object_info: dict[str, Any]) -> bool:
        return self.class_type in object_info


FLAC = AudioSaver("SaveAudio", ".flac", "audio/flac", "flac", lossless=True)
MP3 = AudioSaver("SaveAudioMP3", ".mp3", "audio/mpeg", "mp3", {"quality": "128k"})
OPUS = AudioSaver("SaveAudioOpus", ".opus", "audio/opus", "opus", {"quality": "64k"})
# A COMFY_DYNAMICCOMBO_V3 input in the API format: the option's key under the input's name, the
# option's own inputs under dotted names beside it.
ADVANCED_MP3 = AudioSaver("SaveAudioAdvanced", ".mp3", "audio/mpeg", "mp3", {"format": "mp3", "format.quality": "320k"})
AUDIO_SAVERS = (FLAC, MP3, OPUS, ADVANCED_MP3)


def audio_workflow(
    wav_name: str, savers: tuple[AudioSaver, ...] = (FLAC, MP3, OPUS), prefix: str = "audio/tone", first_id: int = 1
) -> dict[str, Any]:
    """LoadAudio of an uploaded file (node `first_id`) -> one saver node each after it, each saving under
    `<prefix>_<class_type>`. A `first_id` past another workflow's nodes lets the two be merged."""
    source = str(first_id)
    workflow: dict[str, Any] = {source: {"class_type": "LoadAudio", "inputs": {"audio": wav_name}}}
    for index, saver in enumerate(savers, start=first_id + 1):
        inputs = {"audio": [source, 0], "filename_prefix": f"{prefix}_{saver.class_type}", **saver.inputs}
        workflow[str(index)] = {"class_type": saver.class_type, "inputs": inputs}
    return workflow


def video_workflow(
    prefix: str = "video/clip",
    *,
    frames: int = 8,
    size: tuple[int, int] = (64, 48),
    color: int = 0x2080C0,
    fps: float = 8.0,
    codec: str = "auto",
    codec_inputs: dict[str, Any] | None = None,
    wav_name: str | None = None,
) -> dict[str, Any]:
    """EmptyImage batch -> CreateVideo -> SaveVideo (mp4), the video node "3".

    `codec_inputs` are SaveVideo's dotted dynamic-combo inputs (e.g. {"codec.encoding": "re-encode"});
    `wav_name` adds LoadAudio of that uploaded file ("4") as the video's sound track.
    """
    width, height = size
    create: dict[str, Any] = {"images": ["1", 0], "fps": fps}
    workflow: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": height, "batch_size": frames, "color": color},
        },
        "2": {"class_type": "CreateVideo", "inputs": create},
        "3": {
            "class_type": "SaveVideo",
            "inputs": {
                "video": ["2", 0], "filename_prefix": prefix, "format": "mp4", "codec": codec, **(codec_inputs or {}),
            },
        },
    }  # fmt: skip
    if wav_name is not None:
        workflow["4"] = {"class_type": "LoadAudio", "inputs": {"audio": wav_name}}
        create["audio"] = ["4", 0]
    return workflow


def is_dynamic_combo(object_info: dict[str, Any], class_type: str, input_name: str) -> bool:
    """Whether ComfyUI declares that input a COMFY_DYNAMICCOMBO_V3 (a plain combo on older lines)."""
    declared = object_info.get(class_type, {}).get("input", {})
    spec = (declared.get("required") or {}).get(input_name) or (declared.get("optional") or {}).get(input_name)
    return isinstance(spec, list) and bool(spec) and spec[0] == "COMFY_DYNAMICCOMBO_V3"


COMFY_FOLDERS = ("input", "output", "temp")


def comfy_files(base_dir: Path) -> set[str]:
    """Every file under a ComfyUI base directory's input, output and temp folders, as relative paths."""
    return {
        str(path.relative_to(base_dir))
        for folder in COMFY_FOLDERS
        if (base_dir / folder).is_dir()
        for path in (base_dir / folder).rglob("*")
        if path.is_file()
    }


def load_image_workflow(value: Any, prefix: str = "loaded", class_type: str = "LoadImage") -> dict[str, Any]:
    """A loader node reading `value` -> SaveImage: what a caller sends to read a file it names."""
    return {
        "1": {"class_type": class_type, "inputs": {"image": value}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }
