"""The request document: parsed once, validated with messages that say what to change.

The same document arrives through POST /predict, as an inbox object and on the CLI. It may also be
a bare API-format workflow. A UI-format export is refused with the steps to export the API format.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from job.errors import InvalidInput, InvalidJSON, InvalidRequest, UIFormatWorkflow

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
    """The contract's request document (CONTRACT.md section 2)."""

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


def parse_json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidJSON(
            f"the request is not valid JSON ({exc}); send a JSON object with a `workflow` field"
        ) from None


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
    return request


def _explain(exc: ValidationError) -> str:
    return "; ".join(f"`{'.'.join(str(p) for p in err['loc']) or '(document)'}`: {err['msg']}" for err in exc.errors())


def _check_workflow(workflow: dict[str, dict[str, Any]]) -> None:
    if not workflow:
        raise InvalidRequest("`workflow` is empty; " + EXPORT_API_HINT)
    for node_id, node in workflow.items():
        if not isinstance(node.get("class_type"), str):
            raise InvalidRequest(f"node {node_id} has no `class_type`; " + EXPORT_API_HINT)
        if not isinstance(node.get("inputs", {}), dict):
            raise InvalidRequest(f"node {node_id} ({node['class_type']}): `inputs` must be an object")


def check_input_name(name: str) -> str:
    """A bare file name, or InvalidInput: inputs never land outside ComfyUI's input folder."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name or ":" in name:
        raise InvalidInput(
            f"input name {name!r} is not a plain file name; use a name like 'photo.png' without folders or '..'"
        )
    return name


def decode_image(name: str, encoded: str) -> bytes:
    """Bytes of an inline input (base64 or data: URI), checked to be a picture Pillow can open."""
    check_input_name(name)
    payload = encoded.split(",", 1)[1] if encoded.startswith("data:") and "," in encoded else encoded
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"input {name!r}: `image` is not valid base64 (nor a data: URI)") from None
    check_image(name, data)
    return data


def check_image(name: str, data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidInput(f"input {name!r} is not an image Pillow can read (png, jpeg, webp, ...)") from None
