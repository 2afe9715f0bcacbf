"""Which models/ folder a loader input reads, and which of ComfyUI's choices are real files.

The one place that knows it: GET /models (job/service/catalog.py) lists each folder's files by it,
and a missing model (job/engine/preflight.py before queueing, job/comfyui/validation.py after a
400) names the folder it goes in and the files installed there.

Every loader node (category or class name says "loader") lists the files of its folder as the
choices of an input such as `ckpt_name`. Known inputs map to ComfyUI's folder names; any other
loader's list still shows up, under a folder named after its input.

Some choices are not files: VAELoader always offers `pixel_space` (a built-in pass-through, no
file), and the names of the TAESD approximations (`taesd`, `taesdxl`, `taesd3`, `taef1`, `taef2`,
made from two vae_approx/ files each); Load3D's `model_file` offers `none`, the trainer's LoRA list
`[None]` (ComfyUI 0.33's nodes.py and comfy_extras). None of them is the model a workflow asked
for, so none is offered as the answer to a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from job.comfyui.compat import input_spec, is_combo

# Folders that always appear, even empty, so a caller sees where a model would go.
MAIN_FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "upscale_models", "controlnet")
# Choices ComfyUI adds to a model list that are no file of the folder (see the module docstring).
PLACEHOLDERS = frozenset({"pixel_space", "taesd", "taesdxl", "taesd3", "taef1", "taef2", "none", "None", "[None]", ""})
# How an operator adds a model: the fix a missing model's message ends with.
HOW_TO_ADD = (
    "add a model by putting it in that folder of the bucket or folder MODELS_URI names (copied in at "
    "boot) or of the bucket mounted at MODELS_MOUNT, or deploy an image built with a MODEL_TYPE that has "
    "it (docs/customization.md, docs/configuration.md); GET /models lists what is installed"
)

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


def is_loader(class_type: str, info: dict[str, Any]) -> bool:
    """A node that loads models: its category or its class name says so."""
    return "loader" in str(info.get("category", "")).lower() or "Loader" in class_type


def model_folder(class_type: str, info: dict[str, Any] | None, input_name: str) -> str | None:
    """The models/ folder whose files `input_name` of `class_type` picks from, or None if it picks no model.

    `info` is the class's /object_info entry: the input must be a list input of a loader node.
    """
    if info is None or not is_loader(class_type, info) or not _MODEL_INPUT.search(input_name):
        return None
    spec = input_spec(info, input_name)
    if spec is None or not is_combo(spec):
        return None
    known = _BY_NODE_INPUT.get((class_type, input_name)) or _BY_INPUT.get(re.sub(r"\d+$", "", input_name))
    if known:
        return known
    stem = re.sub(r"_?name\d*$", "", input_name)
    return stem or class_type


def model_inputs(class_type: str, info: dict[str, Any]) -> list[tuple[str, str]]:
    """(input, folder) of each model list a loader class declares."""
    inputs = info.get("input") or {}
    names = [name for section in ("required", "optional") for name in (inputs.get(section) or {})]
    return [(name, folder) for name in names if (folder := model_folder(class_type, info, name)) is not None]


def real_files(choices: Iterable[Any]) -> list[str]:
    """The choices that are files of the folder: placeholders such as `pixel_space` left out."""
    return [str(choice) for choice in choices if str(choice) not in PLACEHOLDERS]
