"""The request document: parsed once, validated with messages that say what to change.

The same document arrives through POST /predict, as an inbox object and on the CLI. It may also be
a bare API-format workflow. A UI-format export is refused with the steps to export the API format.

What would fail later, deep inside ComfyUI or a JSON encoder, is refused here with a 4xx that names
the field: JSON nested deeper than MAX_JSON_DEPTH, a lone UTF-16 surrogate in any string (nothing
can encode it as UTF-8), and a `filename_prefix` that is too long, holds NUL or leaves the output
folder (ComfyUI's save nodes would raise with the server's paths in the message).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import posixpath
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from job.errors import InvalidInput, InvalidJSON, InvalidRequest, UIFormatWorkflow, WorkflowInvalid, clip

EXPORT_API_HINT = (
    "In ComfyUI choose Workflow > Export (API) (on older versions enable 'Dev mode' in the settings first) "
    "and send the content of that file as `workflow`."
)


class InputImage(BaseModel):
    """A seed-style inline input: a file name and its bytes as base64 or a data: URI."""

    name: str = Field(description="File name in ComfyUI's input folder, as LoadImage refers to it.")
    image: str = Field(description="Base64 data, or a data: URI.", repr=False)


class OutputOptions(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    format: Literal["png", "webp", "jpeg"] = Field("png", description="png keeps ComfyUI's bytes; webp/jpeg convert.")
    quality: int = Field(95, ge=1, le=100, description="Quality for webp and jpeg.")
    return_: Literal["base64", "uri"] = Field(
        "base64", alias="return", description="uri: upload outputs to the outbox and answer gs:// URIs."
    )


class WorkflowRequest(BaseModel):
    """The contract's request document (docs/api.md section 2)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    workflow: dict[str, dict[str, Any]] = Field(description="ComfyUI API-format workflow (Workflow > Export (API)).")
    images: list[InputImage] = Field(default_factory=list, description="Inline inputs uploaded under `name`.")
    inputs: dict[str, str] = Field(default_factory=dict, description="Inputs by reference: name -> gs:// or https://.")
    output: OutputOptions = Field(default_factory=OutputOptions)  # type: ignore[arg-type]
    webhook: str | None = Field(None, description="URL that receives the result, signed per Standard Webhooks.")
    timeout_s: float | None = Field(None, gt=0, le=86400, description="Deadline of the run in seconds.")
    id: str | None = Field(None, max_length=200, description="Your own id, echoed back.")
    async_: bool = Field(False, alias="async", description="Answer 202 at once and run via the event pipeline.")


def is_ui_format(doc: object) -> bool:
    """True for ComfyUI's UI (graph) export, which the API cannot run."""
    return isinstance(doc, dict) and "nodes" in doc and ("links" in doc or "last_node_id" in doc)


def is_api_workflow(doc: object) -> bool:
    """True for a bare API-format workflow: every value a node with a class_type."""
    return (
        bool(doc)
        and isinstance(doc, dict)
        and all(isinstance(node, dict) and "class_type" in node for node in doc.values())
    )


MAX_JSON_DEPTH = 64  # a workflow needs about 6 levels; the JSON encoders on the way give up past ~250
MAX_PREFIX_BYTES = 200  # a file name is at most 255 bytes, and ComfyUI appends a counter and a suffix
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOO_DEEP = (
    f"the request is JSON nested deeper than {MAX_JSON_DEPTH} levels; "
    "send a JSON object with a `workflow` field whose nodes hold plain values and [node_id, index] links"
)


def parse_json(raw: bytes | str) -> Any:
    """The parsed document, or InvalidJSON: not JSON, or nested deeper than MAX_JSON_DEPTH."""
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidJSON(
            f"the request is not valid JSON ({exc}); send a JSON object with a `workflow` field"
        ) from None
    except RecursionError:  # json's own guard, far past our limit
        raise InvalidJSON(_TOO_DEEP) from None
    if _depth_exceeds(doc, MAX_JSON_DEPTH):
        raise InvalidJSON(_TOO_DEEP)
    return doc


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit`; a loop, not recursion, over the containers only."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_request(doc: object) -> WorkflowRequest:
    """A WorkflowRequest from a request document or a bare workflow, or a typed error saying why not."""
    if is_ui_format(doc) or (isinstance(doc, dict) and is_ui_format(doc.get("workflow"))):
        raise UIFormatWorkflow(
            "this workflow is in ComfyUI's UI format (it has `nodes` and `links`), which cannot be queued. "
            + EXPORT_API_HINT
        )
    if not isinstance(doc, dict):
        raise InvalidRequest(
            "the request must be a JSON object with a `workflow` field (or a bare API-format workflow)"
        )
    if "workflow" not in doc:
        if not is_api_workflow(doc):
            raise InvalidRequest(
                "no `workflow` field, and the document is not an API-format workflow either "
                "(an object of nodes, each with `class_type` and `inputs`). " + EXPORT_API_HINT
            )
        doc = {"workflow": doc}
    try:
        request = WorkflowRequest.model_validate(doc)
    except ValidationError as exc:
        raise InvalidRequest("the request is invalid: " + _explain(exc)) from None
    _check_workflow(request.workflow)
    _check_text({key: value for key, value in doc.items() if key != "workflow"})
    return request


def _explain(exc: ValidationError) -> str:
    return "; ".join(
        f"`{clip('.'.join(str(p) for p in err['loc'])) or '(document)'}`: {err['msg']}" for err in exc.errors()
    )


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value (keys too), with where it is: `inputs.text`, `images.0.name`."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield where, str(key)
                stack.append((child, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{index}") for index, child in enumerate(item))


def _has_surrogate(text: str) -> bool:
    """A lone UTF-16 surrogate (JSON's `\\ud800` alone): a pair decodes to one character, never this."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _check_text(fields: dict[str, Any]) -> None:
    for where, text in _strings(fields, ""):
        if _has_surrogate(text):
            raise InvalidRequest(
                f"`{clip(where)}` holds a lone UTF-16 surrogate (such as \\ud800), which is not text; "
                "send valid Unicode (a surrogate pair for characters beyond U+FFFF)"
            )


def _check_workflow(workflow: dict[str, dict[str, Any]]) -> None:
    if not workflow:
        raise InvalidRequest("`workflow` is empty; " + EXPORT_API_HINT)
    for node_id, node in workflow.items():
        if not isinstance(node.get("class_type"), str):
            raise InvalidRequest(f"node {clip(node_id)} has no `class_type`; " + EXPORT_API_HINT)
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise InvalidRequest(f"node {clip(node_id)} ({clip(node['class_type'])}): `inputs` must be an object")
        for where, text in _strings({"id": node_id, "class_type": node["class_type"]}, ""):
            if _has_surrogate(text):
                raise InvalidRequest(
                    f"a node's `{where}` holds a lone UTF-16 surrogate (such as \\ud800); send valid Unicode"
                )
        for where, text in _strings(inputs, ""):
            if _has_surrogate(text):
                _refuse_input(
                    node_id,
                    node,
                    where.split(".", 1)[0] or text,
                    "holds a lone UTF-16 surrogate (such as \\ud800), "
                    "which is not text; send valid Unicode (a surrogate pair for characters beyond U+FFFF)",
                )
        prefix = inputs.get("filename_prefix")
        if isinstance(prefix, str):
            problem = _prefix_problem(prefix)
            if problem:
                _refuse_input(node_id, node, "filename_prefix", problem, received=prefix)


def _prefix_problem(prefix: str) -> str | None:
    """Why ComfyUI could not save under `prefix` inside its output folder, or None."""
    if "\x00" in prefix:
        return "holds a NUL character; use letters, digits, `-`, `_` and `/` for subfolders"
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        return f"is longer than {MAX_PREFIX_BYTES} bytes; use a shorter prefix"
    normal = posixpath.normpath(prefix) if prefix else ""
    if posixpath.isabs(prefix) or normal == ".." or normal.startswith("../"):
        return "leaves the output folder; use a relative prefix such as `fox` or `portraits/fox`, without `..`"
    return None


def _refuse_input(node_id: str, node: dict[str, Any], name: str, problem: str, **extra: Any) -> None:
    """WorkflowInvalid for one input of one node, in the shape ComfyUI's own refusals have."""
    class_type = str(node.get("class_type"))
    message = f"input {clip(repr(name))} {problem}"
    item: dict[str, Any] = {"type": "invalid_input_value", "input": name, "message": message, **extra}
    raise WorkflowInvalid(
        f"the workflow failed validation:\n- node {clip(node_id)} ({clip(class_type)}) {message}",
        node_errors={node_id: {"class_type": class_type, "errors": [item]}},
    )


def check_input_name(name: str) -> str:
    """A bare file name, or InvalidInput: inputs never land outside ComfyUI's input folder."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name or ":" in name:
        raise InvalidInput(
            f"input name {clip(repr(name))} is not a plain file name; "
            "use a name like 'photo.png' without folders or '..'"
        )
    return name


def decode_image(name: str, encoded: str) -> bytes:
    """Bytes of an inline input (base64 or data: URI), checked to be media a load node reads
    (an image, audio or video: `check_media`)."""
    check_input_name(name)
    payload = encoded.split(",", 1)[1] if encoded.startswith("data:") and "," in encoded else encoded
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"input {clip(repr(name))}: `image` is not valid base64 (nor a data: URI)") from None
    check_media(name, data)
    return data


# Containers a load node (LoadAudio, LoadVideo) reads, known by their first bytes: (kind, test).
_CONTAINERS: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("wav", lambda head: head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI ")),
    ("flac", lambda head: head[:4] == b"fLaC"),
    ("ogg", lambda head: head[:4] == b"OggS"),
    ("mp3", lambda head: head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)),
    ("mp4", lambda head: head[4:8] == b"ftyp"),
    ("webm", lambda head: head[:4] == b"\x1a\x45\xdf\xa3"),  # Matroska's EBML header
)
ACCEPTED_KINDS = (
    "an image Pillow opens (png, jpeg, webp, ...), audio (wav, flac, ogg, mp3) or video (mp4, mov, webm, mkv)"
)


def media_kind(data: bytes) -> str | None:
    """The audio or video container `data` starts with, or None (it may still be an image)."""
    head = data[:16]
    return next((kind for kind, test in _CONTAINERS if test(head)), None)


def check_media(name: str, data: bytes) -> None:
    """InvalidInput unless `data` is one of ACCEPTED_KINDS: what the load nodes read, and nothing
    that would only fail later inside ComfyUI (with the server's paths in its message)."""
    if media_kind(data) is not None:
        return
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Image.DecompressionBombError:
        raise InvalidInput(
            f"input {clip(repr(name))} has more pixels than it is safe to decode "
            f"(over {2 * (Image.MAX_IMAGE_PIXELS or 0)}); send a smaller image"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
        raise InvalidInput(
            f"input {clip(repr(name))} is not an image, audio or video this worker accepts; send {ACCEPTED_KINDS}"
        ) from None


check_image = check_media  # the older name, which job/client/submission.py imports
