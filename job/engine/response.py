"""The contract's success shape (docs/api.md section 3), with base64 data or `gs://` URIs.

`images` keeps the seed's shape for still pictures; `files` carries every other output (video,
animations, audio, text). The `result.json` in the outbox is this shape with `uri` in place of data.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from PIL import Image

from job.comfyui.outputs import OutputFile
from job.engine.request import OutputOptions
from job.engine.runner import RunResult

_PIL_FORMAT = {"webp": ("WEBP", "image/webp", ".webp"), "jpeg": ("JPEG", "image/jpeg", ".jpg")}


def apply_output_format(files: list[OutputFile], options: OutputOptions) -> list[OutputFile]:
    """Convert still images to webp/jpeg as asked; png keeps ComfyUI's bytes untouched."""
    if options.format == "png":
        return files
    pil_format, content_type, suffix = _PIL_FORMAT[options.format]
    converted = []
    for item in files:
        if not item.ref.is_still_image:
            converted.append(item)
            continue
        with Image.open(io.BytesIO(item.data)) as img:
            # jpeg has no alpha channel
            still = img.convert("RGB") if pil_format == "JPEG" and img.mode not in ("RGB", "L") else img
            buffer = io.BytesIO()
            still.save(buffer, format=pil_format, quality=options.quality)
        name = str(PurePosixPath(item.filename).with_suffix(suffix))
        converted.append(replace(item, data=buffer.getvalue(), content_type=content_type, filename=name))
    return converted


def success_body(
    result: RunResult, files: list[OutputFile], *, uris: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The sync response; with `uris` (relpath -> gs:// URI) each entry carries `uri` instead of data."""
    images: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for item in files:
        entry: dict[str, Any] = {
            "node_id": item.ref.node_id,
            "filename": item.filename,
            "subfolder": item.ref.subfolder,
            "type": item.ref.folder_type,
            "content_type": item.content_type,
            "size": item.size,
        }
        still = item.ref.is_still_image
        if uris is not None:
            entry["uri"] = uris[item.relpath]
        else:
            entry["image" if still else "data"] = base64.b64encode(item.data).decode("ascii")
        (images if still else others).append(entry)
    return {
        "status": "success",
        "prompt_id": result.prompt_id,
        "images": images,
        "files": others,
        "outputs": result.outputs,
        "timings": result.timings.as_dict(),
    }
