"""GET /models: what ComfyUI can load, by model folder, read from its /object_info.

Every loader node (category or class name says "loader") lists the files of its folder as the
choices of an input such as `ckpt_name`. Known inputs map to ComfyUI's folder names; any other
loader's list still shows up, under a folder named after its input.
"""

from __future__ import annotations

import re
from typing import Any

# Folders that always appear, even empty, so a caller sees where a model would go.
MAIN_FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "upscale_models", "controlnet")

_BY_INPUT = {
    "ckpt_name": "checkpoints",
    "unet_name": "diffusion_models",  # unet/ is ComfyUI's legacy name for the same folder
    "clip_name": "text_encoders",  # clip/ likewise
    "vae_name": "vae",
    "lora_name": "loras",
    "control_net_name": "controlnet",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "config_name": "configs",
    "photomaker_model_name": "photomaker",
    "model_path": "diffusers",
}
_BY_NODE_INPUT = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("LatentUpscaleModelLoader", "model_name"): "latent_upscale_models",
    ("ModelPatchLoader", "name"): "model_patches",
}
_MODEL_INPUT = re.compile(r"(^|_)name\d*$|^model_path$")


def list_models(object_info: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """(folder -> sorted file names, loader class -> {input: folder}) from ComfyUI's /object_info."""
    models: dict[str, set[str]] = {folder: set() for folder in MAIN_FOLDERS}
    loaders: dict[str, dict[str, str]] = {}
    for class_type, node in object_info.items():
        if not isinstance(node, dict) or not _is_loader(class_type, node):
            continue
        for name, spec in _inputs(node):
            choices = _choices(spec)
            if choices is None or not _MODEL_INPUT.search(name):
                continue
            folder = _folder(class_type, name)
            models.setdefault(folder, set()).update(choices)
            loaders.setdefault(class_type, {})[name] = folder
    return {folder: sorted(names) for folder, names in sorted(models.items())}, loaders


def _is_loader(class_type: str, node: dict[str, Any]) -> bool:
    return "loader" in str(node.get("category", "")).lower() or "Loader" in class_type


def _inputs(node: dict[str, Any]) -> list[tuple[str, Any]]:
    spec = node.get("input")
    if not isinstance(spec, dict):
        return []
    found: list[tuple[str, Any]] = []
    for section in ("required", "optional"):
        inputs = spec.get(section)
        if isinstance(inputs, dict):
            found.extend(inputs.items())
    return found


def _choices(spec: Any) -> list[str] | None:
    """The options of a combo input, in either of ComfyUI's spellings; None for other inputs."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return [str(choice) for choice in spec[0]]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return [str(choice) for choice in spec[1].get("options") or []]
    return None


def _folder(class_type: str, name: str) -> str:
    known = _BY_NODE_INPUT.get((class_type, name)) or _BY_INPUT.get(re.sub(r"\d+$", "", name))
    if known:
        return known
    stem = re.sub(r"_?name\d*$", "", name)
    return stem or class_type
