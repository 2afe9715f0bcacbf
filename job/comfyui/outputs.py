"""The files a finished prompt produced, whatever output key a node used for them.

ComfyUI nodes report files as lists of {filename, subfolder, type} under keys they choose
("images", "gifs", "video", "audio", ...). Anything shaped like that is a file; other keys
(`animated`, `text`) are data and stay in `outputs` only.

A run returns what it saved (`type: "output"`). A graph that only previews (PreviewImage writes to
ComfyUI's temp folder, `type: "temp"`) returns its previews instead, so it never answers an empty
success; one that leaves neither a file nor any data is refused with what to add (`delivered`).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from job.errors import WorkflowInvalid

_EXTRA_TYPES = {
    ".webp": "image/webp", ".webm": "video/webm", ".mp4": "video/mp4", ".mov": "video/quicktime",
    ".mkv": "video/x-matroska", ".flac": "audio/flac", ".opus": "audio/opus", ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg", ".wav": "audio/wav", ".m4a": "audio/mp4", ".glb": "model/gltf-binary",
    ".safetensors": "application/octet-stream", ".latent": "application/octet-stream",
}  # fmt: skip
_STILL_IMAGES = {"image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff"}
_FLAGS = {"animated"}  # keys that qualify a node's files rather than report data of their own
NOTHING_SAVED = (
    "the workflow ran but returned nothing: none of its output nodes reported a file or any data; "
    "add a Save node (SaveImage, SaveAudio, SaveVideo, ...) where it should return its result"
)


def content_type_for(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


@dataclass(frozen=True)
class FileRef:
    """One file ComfyUI reports, before its bytes are fetched."""

    node_id: str
    key: str
    filename: str
    subfolder: str
    folder_type: str
    animated: bool

    @property
    def content_type(self) -> str:
        return content_type_for(self.filename)

    @property
    def relpath(self) -> str:
        """Where the file goes in an outbox or --out folder: ComfyUI's subfolder kept."""
        return str(PurePosixPath(self.subfolder, self.filename)) if self.subfolder else self.filename

    @property
    def is_still_image(self) -> bool:
        """Belongs in the seed's `images` list: a still picture under `images`; the rest go to `files`."""
        return self.key == "images" and not self.animated and self.content_type in _STILL_IMAGES


@dataclass(frozen=True)
class OutputFile:
    ref: FileRef
    data: bytes
    content_type: str
    filename: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def relpath(self) -> str:
        sub = self.ref.subfolder
        return str(PurePosixPath(sub, self.filename)) if sub else self.filename


def file_refs(outputs: dict[str, Any], *, include_temp: bool = False) -> Iterator[FileRef]:
    """Every file in a history entry's `outputs`, in node order; `temp` files only when asked."""
    for node_id, node_output in outputs.items():
        if not isinstance(node_output, dict):
            continue
        animated = any(bool(flag) for flag in node_output.get("animated") or [])
        for key, items in node_output.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if not (isinstance(item, dict) and isinstance(item.get("filename"), str)):
                    continue
                folder_type = str(item.get("type", "output"))
                if folder_type == "temp" and not include_temp:
                    continue
                yield FileRef(
                    node_id=str(node_id),
                    key=key,
                    filename=item["filename"],
                    subfolder=str(item.get("subfolder", "")),
                    folder_type=folder_type,
                    animated=animated,
                )


def delivered(outputs: dict[str, Any], *, include_temp: bool = False) -> list[FileRef]:
    """The files a finished run returns, in `outputs` order: the saved ones; previews only when none
    was saved (each keeps `folder_type` "temp"); both with `include_temp`.

    WorkflowInvalid when there is nothing at all: no file, and no data such as PreviewAny's `text`
    (a run whose outputs are legitimately text is a success; its `outputs` carry it).
    """
    refs = list(file_refs(outputs, include_temp=True))
    saved = [ref for ref in refs if ref.folder_type != "temp"]
    chosen = refs if include_temp or not saved else saved
    if not chosen and not reports_data(outputs):
        raise WorkflowInvalid(NOTHING_SAVED)
    return chosen


def reports_data(outputs: dict[str, Any]) -> bool:
    """Whether any node reported something besides files and their flags (text, numbers, ...)."""
    for node_output in outputs.values():
        if not isinstance(node_output, dict):
            continue
        for key, value in node_output.items():
            if key in _FLAGS or value in (None, [], {}, ""):
                continue
            if isinstance(value, list) and all(_is_file(item) for item in value):
                continue
            return True
    return False


def _is_file(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("filename"), str)
