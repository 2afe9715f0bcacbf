"""The request document: this worker's fields, validated once with messages that say what to change.

Whatever shape a document came in (job/engine/documents.py turns RunPod's and ComfyUI's bodies and
bare workflows into ours), it is checked here. `extra_data` (what ComfyUI's API nodes read their
comfy.org key from) is a secret: it is passed to ComfyUI and carried to the job, never logged,
echoed or named by value in a message.

What would fail later, deep inside ComfyUI or a JSON encoder, is refused here with a 4xx that names
the field: a lone UTF-16 surrogate in any string (nothing can encode it as UTF-8), and a
`filename_prefix` that is too long, holds NUL or leaves the output folder (ComfyUI's save nodes
would raise with the server's paths in the message).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from job.engine.documents import EXPORT_API_HINT, as_document
from job.engine.documents import parse_json as parse_json  # where callers of parse_request find it
from job.errors import InvalidRequest, WorkflowInvalid, clip


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
    # repr=False: a request in a log line or a traceback never shows the caller's keys.
    extra_data: dict[str, Any] | None = Field(
        None,
        repr=False,
        description="Passed to ComfyUI as POST /prompt's `extra_data` (its API nodes read `api_key_comfy_org` "
        "and `auth_token_comfy_org` there); never logged or echoed.",
    )


MAX_PREFIX_BYTES = 200  # a file name is at most 255 bytes, and ComfyUI appends a counter and a suffix
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_request(doc: object) -> WorkflowRequest:
    """A WorkflowRequest from any accepted shape (`as_document`), or a typed error saying why not."""
    doc = as_document(doc)
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
