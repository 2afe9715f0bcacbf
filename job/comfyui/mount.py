"""A Cloud Storage volume mounted at MODELS_MOUNT, made visible to ComfyUI without copying.

`write_extra_model_paths` maps the volume's model folders in extra_model_paths.yaml; each model
then streams over Cloud Storage FUSE when ComfyUI first loads it. ComfyUI reads that file once, at
start, so `ComfyServer.start` writes it before the spawn. This module stays light (no storage
clients), since a job task starts ComfyUI before its heavier imports.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from job.errors import ConfigurationError, StorageError

log = logging.getLogger(__name__)

# ComfyUI's model folders (folder_paths.py); `clip` and `unet` are its legacy names, still mapped.
MODEL_FOLDERS = (
    "audio_encoders", "checkpoints", "classifiers", "clip", "clip_vision", "configs", "controlnet",
    "diffusers", "diffusion_models", "embeddings", "gligen", "hypernetworks", "latent_upscale_models",
    "loras", "model_patches", "photomaker", "style_models", "t2i_adapter", "text_encoders", "unet",
    "upscale_models", "vae", "vae_approx",
)  # fmt: skip


def write_extra_model_paths(mount: Path, comfyui_dir: Path, *, target: Path | None = None) -> Path:
    """Map the model folders of the volume at `mount` for ComfyUI; returns the YAML written.

    The file goes to `target`, by default `comfyui_dir/extra_model_paths.yaml`, which ComfyUI reads
    at start. Where that folder is read-only (the image runs as a non-root user), pass a writable
    `target` and start ComfyUI with `--extra-model-paths-config TARGET`. Every standard folder is
    mapped whether present or not (listing a FUSE mount can be slow), plus any other folder found.
    """
    mount = Path(mount)
    if not mount.is_dir():
        raise ConfigurationError(
            f"MODELS_MOUNT={mount} is not a folder; mount the models bucket there "
            '(models_mode = "mount" in eventarc.tf) or unset MODELS_MOUNT'
        )
    folders = set(MODEL_FOLDERS)
    try:
        folders.update(entry.name for entry in mount.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    except OSError as exc:
        log.warning("could not list %s (%s); mapping the standard model folders only", mount, exc)
    lines = [
        f"# Written by worker-comfyui: the models on the volume at {mount}.",
        "worker_comfyui_models:",
        f"  base_path: {json.dumps(str(mount))}",
        "  is_default: false",
        *(f"  {json.dumps(name)}: {json.dumps(name)}" for name in sorted(folders)),
    ]
    path = Path(target) if target is not None else Path(comfyui_dir) / "extra_model_paths.yaml"
    try:
        _write_atomically(path, "\n".join(lines) + "\n")
    except OSError as exc:
        raise StorageError(
            f"cannot write {path} ({exc.strerror}); pass a writable target and start ComfyUI "
            "with --extra-model-paths-config"
        ) from exc
    return path


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
