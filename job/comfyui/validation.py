"""ComfyUI's /prompt 400 answers, turned into errors that say which node is wrong and how to fix it.

ComfyUI's messages echo the received value (a caller's string may be megabytes) and may name files
on the server: each part is cut here (`clip`) so every node keeps its line, and job/errors.py's
renderer takes server paths out of what the caller sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from job.comfyui.compat import input_choices, unknown_node_refusal
from job.errors import MissingModel, UnknownNode, WorkerError, WorkflowInvalid, clip

_MODEL_INPUT = re.compile(r"(ckpt|unet|vae|lora|clip|control_net|model|style_model|gligen|upscale_model)_name\d*$")


def prompt_error(
    body: dict[str, Any], workflow: dict[str, Any], object_info: Callable[[], dict[str, Any]]
) -> WorkerError:
    """Build the typed error for a refused prompt; `object_info` is asked only for choice lists."""
    error = body.get("error") or {}
    if isinstance(error, str):
        error = {"message": error}
    kind = error.get("type", "")
    message = str(error.get("message", "ComfyUI refused the workflow"))
    details = str(error.get("details", ""))

    unknown = unknown_node_refusal(error)
    if unknown is not None:
        node_id = unknown.node_id
        class_type = str(workflow.get(node_id, {}).get("class_type", "?"))
        return UnknownNode(
            f"node {node_id}: node type {class_type!r} is not installed in this ComfyUI. "
            "Check the spelling, or install the custom node that provides it (see docs/customization.md).",
            node_errors={
                node_id: {"class_type": class_type, "errors": [{"type": "unknown_node", "message": unknown.message}]}
            },
        )
    if kind == "prompt_no_outputs":
        return WorkflowInvalid(
            "the workflow has no output node: add one such as SaveImage, so there is something to return"
        )

    node_errors = _node_errors(body.get("node_errors") or {}, object_info)
    if not node_errors:
        return WorkflowInvalid(f"ComfyUI refused the workflow: {clip(message)}. {clip(details)}".strip())
    lines = [
        f"node {clip(node_id)} ({clip(entry['class_type'])}) {_describe(item)}"
        for node_id, entry in node_errors.items()
        for item in entry["errors"]
    ]
    missing_model = any(item.get("choices") is not None and _is_model_input(entry, item)
                        for entry in node_errors.values() for item in entry["errors"])  # fmt: skip
    cls = MissingModel if missing_model else WorkflowInvalid
    return cls("the workflow failed validation:\n" + "\n".join(f"- {line}" for line in lines), node_errors=node_errors)


def _node_errors(raw: dict[str, Any], object_info: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Per node: class_type and its errors, each with input name, message and (for lists) the choices."""
    result: dict[str, Any] = {}
    info: dict[str, Any] | None = None
    for node_id, entry in raw.items():
        class_type = str(entry.get("class_type", "?"))
        errors = []
        for err in entry.get("errors", []):
            extra = err.get("extra_info") or {}
            item: dict[str, Any] = {
                "type": err.get("type"),
                "input": extra.get("input_name"),
                "message": err.get("message"),
                "details": err.get("details"),
            }
            if "received_value" in extra:
                item["received"] = extra["received_value"]
            if err.get("type") == "value_not_in_list":
                if info is None:
                    info = object_info()
                item["choices"] = input_choices(info, class_type, str(extra.get("input_name")))
            errors.append(item)
        if errors:
            result[str(node_id)] = {"class_type": class_type, "errors": errors}
    return result


def _is_model_input(entry: dict[str, Any], item: dict[str, Any]) -> bool:
    return "Loader" in entry["class_type"] or bool(_MODEL_INPUT.search(str(item.get("input") or "")))


def _describe(item: dict[str, Any]) -> str:
    where = f"input {clip(repr(item['input']))}: " if item.get("input") else ""
    if item.get("type") == "value_not_in_list":
        choices = item.get("choices") or []
        offered = ", ".join(map(repr, choices[:20])) + (" ..." if len(choices) > 20 else "")
        fix = (
            f"choose one of: {offered}" if choices else "none is installed: add the file to the matching models/ folder"
        )
        return f"{where}{clip(repr(item.get('received')))} is not available; {fix}"
    return f"{where}{clip(str(item.get('message')))}: {clip(str(item.get('details')))}".rstrip(": ")
