"""ComfyUI's /prompt 400 answers, turned into errors that say which node is wrong and how to fix it.

Most of what a workflow gets wrong is found before queueing (job/engine/preflight.py): unknown node
types, missing models and files, all at once. What comes here is what only ComfyUI can judge (a
number out of range, a link of the wrong type), and anything a pre-pass could not foresee (a node
uninstalled meanwhile). The same care applies: every node is named, an unknown type's every node
(from /object_info, where it answers), a list value's choices without placeholders such as
VAELoader's `pixel_space`, and a model's models/ folder (job/comfyui/model_folders.py).

ComfyUI's messages echo the received value (a caller's string may be megabytes) and may name files
on the server: each part is cut here (`clip`) so every node keeps its line, and job/errors.py's
renderer takes server paths out of what the caller sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from job.comfyui.compat import input_choices, unknown_node_refusal
from job.comfyui.model_folders import HOW_TO_ADD, model_folder, real_files
from job.errors import MissingModel, UnknownNode, WorkerError, WorkflowInvalid, clip

# How a caller gets a node type installed: the fix every unknown node's message ends with.
HOW_TO_INSTALL = (
    "check the spelling, or install the custom node that provides it: add its entry (Comfy Registry "
    "name@version, or git URL@commit) to custom_nodes.txt and rebuild the image (docs/customization.md)"
)


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
        return _unknown_nodes(unknown.node_id, unknown.message, workflow, object_info)
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
    missing_model = any(item.get("folder") for entry in node_errors.values() for item in entry["errors"])
    cls = MissingModel if missing_model else WorkflowInvalid
    fix = f"\nTo fix a missing model: {HOW_TO_ADD}." if missing_model else ""
    return cls(
        "the workflow failed validation:\n" + "\n".join(f"- {line}" for line in lines) + fix, node_errors=node_errors
    )


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
                choices = input_choices(info, class_type, str(extra.get("input_name")))
                folder = _model_folder(info, class_type, str(extra.get("input_name")))
                if folder is not None:
                    item["folder"] = folder
                    choices = real_files(choices)
                item["choices"] = choices
            errors.append(item)
        if errors:
            result[str(node_id)] = {"class_type": class_type, "errors": errors}
    return result


def _unknown_nodes(
    node_id: str, message: str, workflow: dict[str, Any], object_info: Callable[[], dict[str, Any]]
) -> UnknownNode:
    """UnknownNode naming the refused node and every other node whose type /object_info lacks."""
    refused_type = str(workflow.get(node_id, {}).get("class_type", "?"))
    catalogue = object_info()
    unknown: dict[str, list[str]] = {refused_type: [node_id]}
    if catalogue:  # none when ComfyUI did not answer: then only the node it refused is known to be missing
        for other_id, node in workflow.items():
            class_type = str(node.get("class_type", "?")) if isinstance(node, dict) else "?"
            if str(other_id) != node_id and class_type not in catalogue:
                unknown.setdefault(class_type, []).append(str(other_id))
    node_errors: dict[str, Any] = {}
    lines: list[str] = []
    for class_type, node_ids in unknown.items():
        nodes = f"node {node_ids[0]}" if len(node_ids) == 1 else "nodes " + ", ".join(node_ids)
        lines.append(f"{clip(nodes)}: node type {clip(repr(class_type))} is not installed in this ComfyUI.")
        for each in node_ids:
            said = message if each == node_id else f"node type {class_type!r} is not installed"
            node_errors[each] = {"class_type": class_type, "errors": [{"type": "unknown_node", "message": said}]}
    return UnknownNode(
        " ".join(lines) + f" To fix: {HOW_TO_INSTALL}.",
        node_errors=node_errors,
        unknown_node_types=[{"class_type": name, "node_ids": ids} for name, ids in unknown.items()],
    )


def _model_folder(info: dict[str, Any], class_type: str, input_name: str) -> str | None:
    """The models/ folder a list input picks from, or None (not a model list, or ComfyUI did not say)."""
    class_info = info.get(class_type)
    return model_folder(class_type, class_info if isinstance(class_info, dict) else None, input_name)


def _describe(item: dict[str, Any]) -> str:
    where = f"input {clip(repr(item['input']))}: " if item.get("input") else ""
    if item.get("type") == "value_not_in_list":
        choices = item.get("choices") or []
        offered = ", ".join(map(repr, choices[:20])) + (" ..." if len(choices) > 20 else "")
        folder = item.get("folder")
        if choices:
            fix = f"choose one of: {offered}"
        elif folder:
            fix = f"no model is installed in models/{folder}/"
        else:
            fix = "ComfyUI offers no choice for it"
        place = f" in models/{folder}/" if folder and choices else ""
        return f"{where}{clip(repr(item.get('received')))} is not available{place}; {fix}"
    return f"{where}{clip(str(item.get('message')))}: {clip(str(item.get('details')))}".rstrip(": ")
