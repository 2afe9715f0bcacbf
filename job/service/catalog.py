"""GET /models: what ComfyUI can load, by model folder, read from its /object_info.

Which loader input reads which folder, and which choices are no file (VAELoader's `pixel_space`),
is job/comfyui/model_folders.py's to know: a missing model's error names the same folders.
"""

from __future__ import annotations

from typing import Any

from job.comfyui.compat import input_choices
from job.comfyui.model_folders import MAIN_FOLDERS, model_inputs, real_files


def list_models(object_info: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """(folder -> sorted file names, loader class -> {input: folder}) from ComfyUI's /object_info."""
    models: dict[str, set[str]] = {folder: set() for folder in MAIN_FOLDERS}
    loaders: dict[str, dict[str, str]] = {}
    for class_type, node in object_info.items():
        if not isinstance(node, dict):
            continue
        for name, folder in model_inputs(class_type, node):
            models.setdefault(folder, set()).update(real_files(input_choices(object_info, class_type, name)))
            loaders.setdefault(class_type, {})[name] = folder
    return {folder: sorted(names) for folder, names in sorted(models.items())}, loaders
