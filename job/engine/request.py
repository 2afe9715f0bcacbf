"""The request document: parsed once, validated with messages that say what to change.

The same document arrives through POST /predict, as an inbox object and on the CLI. It may also be
a bare API-format workflow, or come in the envelope of another API (docs/api.md section 2):

    {"workflow": {...}, ...}                        ours
    {"<node id>": {"class_type": ...}, ...}         a bare API-format workflow
    {"input": {<ours>}, "webhook", "policy"}        RunPod's job body (worker-comfyui's `input`)
    {"prompt": {...}, "client_id", "extra_data"}    ComfyUI's own POST /prompt body

Each is turned into ours (`as_document`) before anything is checked, so every way in checks the
same fields with the same messages. A UI-format export is refused with the steps to export the API
format. `extra_data` (what ComfyUI's API nodes read their comfy.org key from) is a secret: it is
passed to ComfyUI and carried to the job, never logged, echoed or named by value in a message.

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
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

from PIL import Image
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
    # repr=False: a request in a log line or a traceback never shows the caller's keys.
    extra_data: dict[str, Any] | None = Field(
        None,
        repr=False,
        description="Passed to ComfyUI as POST /prompt's `extra_data` (its API nodes read `api_key_comfy_org` "
        "and `auth_token_comfy_org` there); never logged or echoed.",
    )


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


ACCEPTED_SHAPES = (
    'send this worker\'s request document `{"workflow": {...}}`, a bare API-format workflow (an object of nodes, '
    'each with `class_type` and `inputs`), RunPod\'s `{"input": {"workflow": {...}}}` or ComfyUI\'s '
    '`{"prompt": {...}}` (docs/api.md section 2)'
)
# RunPod's job body: `input` is the worker's; `webhook` and `policy` are RunPod's own, honoured here;
# `s3Config` (uploads to the caller's S3) has no meaning on this worker and is ignored.
RUNPOD_FIELDS = ("input", "webhook", "policy", "s3Config")
# The comfy.org key inside RunPod's `input`: worker-comfyui's documented name, and its handler's older one.
RUNPOD_KEY_FIELDS = ("comfy_org_api_key", "api_key_comfy_org")
COMFY_KEY = "api_key_comfy_org"  # where ComfyUI's API nodes read it (extra_data)
# ComfyUI's POST /prompt body: `prompt` and `extra_data` are used; `client_id`, `prompt_id`, `number`
# and `front` concern ComfyUI's own queue and websocket, which this worker runs under ids of its own.
COMFYUI_FIELDS = ("prompt", "client_id", "extra_data", "prompt_id", "number", "front")
MAX_EXECUTION_TIMEOUT_MS = 86_400_000  # timeout_s's own bound, in RunPod's milliseconds


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


def as_document(doc: object) -> dict[str, Any]:
    """This worker's request document from any shape parse_request accepts; its fields not yet checked.

    InvalidRequest (UIFormatWorkflow for a UI export) for a document of no accepted shape, with the
    shapes in the message.
    """
    _refuse_ui_format(doc)
    if not isinstance(doc, dict):
        raise InvalidRequest(f"the request must be a JSON object; {ACCEPTED_SHAPES}")
    if "workflow" in doc:
        return doc
    if is_api_workflow(doc):
        return {"workflow": doc}
    if "input" in doc:
        return _from_runpod(doc)
    if "prompt" in doc:
        return _from_comfyui(doc)
    raise InvalidRequest(
        "no `workflow` field, and the document is not an API-format workflow either, nor RunPod's or ComfyUI's "
        f"request; {ACCEPTED_SHAPES}. " + EXPORT_API_HINT
    )


def _refuse_ui_format(doc: object) -> None:
    """UIFormatWorkflow when `doc` or its workflow (ours, RunPod's, ComfyUI's) is a UI-format export."""
    if not isinstance(doc, dict):
        return
    candidates = [doc, doc.get("workflow"), doc.get("prompt")]
    inner = doc.get("input")
    if isinstance(inner, dict):
        candidates += [inner, inner.get("workflow")]
    if any(is_ui_format(candidate) for candidate in candidates):
        raise UIFormatWorkflow(
            "this workflow is in ComfyUI's UI format (it has `nodes` and `links`), which cannot be queued. "
            + EXPORT_API_HINT
        )


def _from_runpod(doc: dict[str, Any]) -> dict[str, Any]:
    """RunPod's `{"input": {...}, "webhook", "policy"}`: `input` is our document (worker-comfyui's
    `workflow` and `images` are ours), its comfy.org key goes to extra_data, and RunPod's
    `webhook` and `policy.executionTimeout` become ours."""
    unknown = sorted(set(doc) - set(RUNPOD_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"RunPod's request body has the unknown top-level field(s) {clip(', '.join(map(repr, unknown)))}; "
            "it takes `input` (the workflow and its inputs), `webhook` and `policy`"
        )
    inner = doc["input"]
    if isinstance(inner, str):  # RunPod's worker takes `input` as a JSON string too
        inner = parse_json(inner)
        _refuse_ui_format(inner)
    if not isinstance(inner, dict):
        raise InvalidRequest(
            'RunPod\'s `input` must be a JSON object: `{"workflow": {...}, "images": [...]}`, '
            "as RunPod's worker-comfyui takes it"
        )
    document = dict(inner) if "workflow" in inner or not is_api_workflow(inner) else {"workflow": inner}
    if "workflow" not in document:
        raise InvalidRequest(
            'RunPod\'s `input` has no `workflow` field; send `{"input": {"workflow": <API-format workflow>}}`. '
            + EXPORT_API_HINT
        )
    for name in RUNPOD_KEY_FIELDS:
        if name in document:
            _put_key(document, name, document.pop(name))
    webhook = doc.get("webhook")
    if webhook is not None:
        if document.get("webhook") not in (None, webhook):
            raise InvalidRequest("RunPod's `webhook` and `input.webhook` differ; send one of them")
        document["webhook"] = webhook
    policy = doc.get("policy")
    if policy is not None:
        if not isinstance(policy, dict):
            raise InvalidRequest('RunPod\'s `policy` must be an object, such as `{"executionTimeout": 600000}`')
        timeout_ms = policy.get("executionTimeout")
        if timeout_ms is not None:
            document["timeout_s"] = _execution_timeout_s(timeout_ms, document.get("timeout_s"))
    return document


def _put_key(document: dict[str, Any], name: str, key: object) -> None:
    """RunPod's comfy.org key as ComfyUI's API nodes read it: `extra_data.api_key_comfy_org`."""
    if not isinstance(key, str) or not key:
        raise InvalidRequest(f"RunPod's `input.{name}` must be a non-empty string (your comfy.org API key)")
    extra = document.get("extra_data")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise InvalidRequest("`input.extra_data` must be an object")
    if extra.get(COMFY_KEY) not in (None, key):
        raise InvalidRequest(f"`input.{name}` and `input.extra_data.{COMFY_KEY}` differ; send one of them")
    document["extra_data"] = {**extra, COMFY_KEY: key}


def _execution_timeout_s(timeout_ms: object, timeout_s: object) -> object:
    """RunPod's `policy.executionTimeout` (ms) as our timeout_s; the shorter one when both are given."""
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float) or timeout_ms <= 0:
        raise InvalidRequest("RunPod's `policy.executionTimeout` must be a positive number of milliseconds")
    if timeout_ms > MAX_EXECUTION_TIMEOUT_MS:
        raise InvalidRequest(
            f"RunPod's `policy.executionTimeout` is at most {MAX_EXECUTION_TIMEOUT_MS} ms (24 h) on this worker"
        )
    seconds = timeout_ms / 1000
    if isinstance(timeout_s, int | float) and not isinstance(timeout_s, bool):
        return min(timeout_s, seconds)
    return seconds if timeout_s is None else timeout_s  # a malformed timeout_s gets its own message


def _from_comfyui(doc: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's `{"prompt": {...}, "client_id", "extra_data", ...}`: the graph and extra_data are used;
    the queue fields are checked as ComfyUI checks them, then left to ComfyUI's queue, which this
    worker drives under a prompt_id and client_id of its own (its websocket routes events by them)."""
    unknown = sorted(set(doc) - set(COMFYUI_FIELDS))
    if "partial_execution_targets" in unknown:
        raise InvalidRequest(
            "`partial_execution_targets` is not supported: this worker runs every output node of the workflow; "
            "remove the output nodes you do not want, and the field"
        )
    if unknown:
        raise InvalidRequest(
            f"ComfyUI's request body has the unknown field(s) {clip(', '.join(map(repr, unknown)))}; "
            f"it takes {', '.join(f'`{name}`' for name in COMFYUI_FIELDS)}. {ACCEPTED_SHAPES}"
        )
    prompt = doc["prompt"]
    if not isinstance(prompt, dict):
        raise InvalidRequest("ComfyUI's `prompt` must be an API-format workflow (an object of nodes by id)")
    prompt_id = doc.get("prompt_id")
    if prompt_id is not None and not _is_canonical_uuid(prompt_id):
        raise InvalidRequest(
            "`prompt_id` must be a UUID in canonical lowercase hyphenated form, as ComfyUI requires, or left out "
            "(this worker queues the prompt under an id of its own either way)"
        )
    client_id = doc.get("client_id")
    if client_id is not None and not isinstance(client_id, str):
        raise InvalidRequest("`client_id` must be a string")
    number = doc.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
        raise InvalidRequest("`number` must be a number (ComfyUI's queue position), or left out")
    front = doc.get("front")
    if front is not None and not isinstance(front, bool):
        raise InvalidRequest("`front` must be true or false, or left out")
    document: dict[str, Any] = {"workflow": prompt}
    if "extra_data" in doc:
        document["extra_data"] = doc["extra_data"]
    return document


def _is_canonical_uuid(value: object) -> bool:
    """ComfyUI's own rule for a client's prompt_id (comfy_execution/jobs.py validate_job_id)."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning where warnings are errors
        raise InvalidInput(
            f"input {clip(repr(name))} has more pixels than it is safe to decode; "
            f"send an image of at most {Image.MAX_IMAGE_PIXELS or 0} pixels"
        ) from None
    except Exception:  # whatever the caller's bytes make Pillow raise is theirs to fix:
        # its plugins raise more than they document (struct.error, KeyError, ...), and with warnings
        # turned errors (-W error) a truncated TIFF's UserWarning, say, is an exception too.
        raise InvalidInput(
            f"input {clip(repr(name))} is not an image, audio or video this worker accepts; send {ACCEPTED_KINDS}"
        ) from None


check_image = check_media  # the older name, which job/client/submission.py imports
