"""Request documents as they arrive: JSON, and the shapes of other APIs turned into this worker's.

The same document comes through POST /predict, as an inbox object, in a batch spec and on the CLI,
in any of these shapes (docs/api.md section 2):

    {"workflow": {...}, ...}                        ours
    {"<node id>": {"class_type": ...}, ...}         a bare API-format workflow
    {"input": {<ours>}, "webhook", "policy"}        RunPod's job body (worker-comfyui's `input`)
    {"prompt": {...}, "client_id", "extra_data"}    ComfyUI's own POST /prompt body

`as_document` turns each into ours before anything is checked (job/engine/request.py checks it),
so every way in gets the same fields and messages. A UI-format export is refused with the steps to
export the API format; JSON nested deeper than MAX_JSON_DEPTH is refused before any recursion.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from job.errors import InvalidJSON, InvalidRequest, UIFormatWorkflow, clip

EXPORT_API_HINT = (
    "In ComfyUI choose Workflow > Export (API) (on older versions enable 'Dev mode' in the settings first) "
    "and send the content of that file as `workflow`."
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
