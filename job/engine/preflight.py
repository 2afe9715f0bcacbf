"""One look at a workflow before anything is uploaded or queued: everything to fix, in one error.

ComfyUI's POST /prompt stops at the first unknown node type and says nothing of models or files
past it, so a caller with a borrowed workflow learns its problems one round trip at a time. The
runner already holds /object_info of the workflow's classes (`Runner._node_classes`), and that is
enough to name, at once:

    every node type ComfyUI lacks           type -> the nodes using it; how to install one
    every model a loader names that its     the models/ folder it goes in (job/comfyui/model_folders.py),
    list does not offer                     what is installed there, how to add one
    every file input naming a file the      job/engine/file_policy.py's refusals, merged in
    request did not send (or may not read)

in one WorkflowInvalid: `unknown_node` when a node type is unknown, else `missing_model` when a
model is, else `workflow_invalid`, with every node in `node_errors` and the lists complete in the
error's details (`unknown_node_types`, `missing_models`, `refused_files`) even where the message is
cut. What only ComfyUI can judge (a number out of range, a link of the wrong type) still comes
from its 400 (job/comfyui/validation.py).

A file input whose value is an https:// or gs:// URL (http:// too, where ALLOW_PRIVATE_URLS allows
it) is named here like a file the request sent; `Prepared.urls` says what to fetch for it, which the
runner does through the request's own fetcher (job/engine/inputs.py `fetch_references`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from job.comfyui.compat import input_choices
from job.comfyui.model_folders import HOW_TO_ADD, model_inputs, real_files
from job.comfyui.validation import HOW_TO_INSTALL
from job.engine.file_policy import Refusal, allowed_files, check_files, is_file_input, refusal_item, refusal_line
from job.errors import MissingModel, UnknownNode, WorkflowInvalid, clip

URL_SCHEMES = ("https://", "gs://", "http://")  # http:// is the outbound policy's to refuse or allow
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Prepared:
    """A workflow that passed: its file inputs name the run's files, and the URLs to fetch for it."""

    workflow: dict[str, Any]
    urls: dict[str, str]  # file name in the run's folder -> the URL a file input gave
    where: dict[str, str]  # file name -> "node 3 (LoadImage) input 'image'", for a refused fetch


@dataclass(frozen=True)
class _Missing:
    node_id: str
    class_type: str
    input: str
    received: str
    folder: str
    installed: list[str]


def preflight(
    workflow: Mapping[str, Any],
    *,
    inputs: Iterable[str],
    folder: str,
    classes: Mapping[str, dict[str, Any]],
    allow_outside: bool = False,
    fresh_object_info: Callable[[], dict[str, Any]] | None = None,
) -> Prepared:
    """`workflow` ready to queue, or one WorkflowInvalid (or subclass) listing every problem found.

    `inputs` are the names the request sent, uploaded to `folder`; `classes` ComfyUI's /object_info
    entries of the workflow's classes (a class it lacks is absent). A model its remembered list
    lacks is looked up again in `fresh_object_info()` before it is called missing: it may have
    arrived since (MODELS_MOUNT, a sync).
    """
    named, urls, where = _url_values(workflow, classes)
    supplied = {name: f"{folder}/{name}" for name in [*inputs, *urls]}
    checked, refusals = check_files(named, supplied=supplied, classes=classes, allow_outside=allow_outside)
    refused = {refusal.node_id for refusal in refusals}
    unknown = _unknown_types(workflow, classes, refused)
    missing = _missing_models(workflow, classes, refusals, fresh_object_info)
    if unknown or missing or refusals:
        raise _report(unknown, missing, refusals, {name: path for name, path in supplied.items() if name not in urls})
    return Prepared(checked, urls, where)


def url_file_name(uri: str) -> str:
    """The file name a URL value is stored under in the run's folder: its own last part, made safe,
    behind a digest of the whole URL (two URLs never share a name; the same URL twice is one file)."""
    last = unquote(urlsplit(uri).path.rsplit("/", 1)[-1])
    safe = _UNSAFE.sub("_", last).strip("._")[-80:] or "file"
    return f"url-{hashlib.sha256(uri.encode()).hexdigest()[:12]}-{safe}"


def _url_values(
    workflow: Mapping[str, Any], classes: Mapping[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The workflow with each file input's URL value replaced by its file name; name -> URL; name -> where."""
    urls: dict[str, str] = {}
    where: dict[str, list[str]] = {}
    result: dict[str, Any] = {}
    for node_id, node in workflow.items():
        result[node_id] = node
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        class_type = str(node.get("class_type"))
        info = classes.get(class_type)
        changed = dict(node["inputs"])
        for name, value in node["inputs"].items():
            is_url = isinstance(value, str) and value.lower().startswith(URL_SCHEMES)
            if is_url and is_file_input(class_type, info, name):
                file_name = url_file_name(value)
                urls[file_name] = value
                where.setdefault(file_name, []).append(f"node {node_id} ({class_type}) input {name!r}")
                changed[name] = file_name
        if changed != node["inputs"]:
            result[node_id] = {**node, "inputs": changed}
    return result, urls, {name: ", ".join(sites) for name, sites in where.items()}


def _unknown_types(
    workflow: Mapping[str, Any], classes: Mapping[str, dict[str, Any]], refused: set[str]
) -> dict[str, list[str]]:
    """class_type -> the ids of the nodes using it, for each type ComfyUI lacks.

    A node the file policy refused is not listed again: installed or not, it would be refused.
    """
    unknown: dict[str, list[str]] = {}
    for node_id, node in workflow.items():
        if isinstance(node, dict) and str(node_id) not in refused:
            class_type = str(node.get("class_type"))
            if class_type not in classes:
                unknown.setdefault(class_type, []).append(str(node_id))
    return unknown


def _missing_models(
    workflow: Mapping[str, Any],
    classes: Mapping[str, dict[str, Any]],
    refusals: list[Refusal],
    fresh_object_info: Callable[[], dict[str, Any]] | None,
) -> list[_Missing]:
    """Each loader input whose value is not among its list's choices (links and refused values aside)."""
    refused = {(refusal.node_id, refusal.input) for refusal in refusals}
    candidates: list[tuple[str, str, str, str, str]] = []
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        class_type = str(node.get("class_type"))
        info = classes.get(class_type)
        if info is None:
            continue
        for name, folder in model_inputs(class_type, info):
            if is_file_input(class_type, info, name):
                continue  # the request's own file (file_policy's), not a model of the folder
            value = node["inputs"].get(name)
            listed = input_choices(dict(classes), class_type, name)
            if isinstance(value, str) and (str(node_id), name) not in refused and value not in listed:
                candidates.append((str(node_id), class_type, name, value, folder))
    if not candidates:
        return []
    fresh = (fresh_object_info() if fresh_object_info is not None else None) or dict(classes)
    missing: list[_Missing] = []
    for node_id, class_type, name, value, folder in candidates:
        choices = input_choices(fresh, class_type, name)
        if value not in choices:
            missing.append(_Missing(node_id, class_type, name, value, folder, real_files(choices)))
    return missing


def _report(
    unknown: dict[str, list[str]], missing: list[_Missing], refusals: list[Refusal], supplied: Mapping[str, str]
) -> WorkflowInvalid:
    """The one error: a summary and the fixes first (the message may be cut), then a line per problem."""
    node_errors: dict[str, Any] = {}

    def add(node_id: str, class_type: str, item: dict[str, Any]) -> None:
        node_errors.setdefault(node_id, {"class_type": class_type, "errors": []})["errors"].append(item)

    counts: list[str] = []
    fixes: list[str] = []
    groups: list[str] = []
    if unknown:
        counts.append(_count(len(unknown), "node type is", "node types are") + " not installed")
        fixes.append(f"- a node type that is not installed: {HOW_TO_INSTALL}")
        groups.append("node types not installed in this ComfyUI:")
        for class_type, node_ids in unknown.items():
            nodes = f"node {node_ids[0]}" if len(node_ids) == 1 else "nodes " + ", ".join(node_ids)
            groups.append(f"- {clip(nodes)}: node type {clip(repr(class_type))} is not installed")
            for node_id in node_ids:
                item = {"type": "unknown_node", "message": f"node type {class_type!r} is not installed"}
                add(node_id, class_type, item)
    if missing:
        counts.append(_count(len(missing), "model is", "models are") + " missing")
        fixes.append(f"- a missing model: {HOW_TO_ADD}")
        groups.append("models not installed:")
        for model in missing:
            groups.append(f"- node {model.node_id} ({model.class_type}) input {model.input!r}: {_model_problem(model)}")
            add(
                model.node_id,
                model.class_type,
                {
                    "type": "value_not_in_list",
                    "input": model.input,
                    "received": model.received,
                    "folder": model.folder,
                    "choices": model.installed,
                    "message": _model_problem(model),
                },
            )
    if refusals:
        counts.append(_count(len(refusals), "file input names a file", "file inputs name files") + " it may not read")
        fixes.append(f"- a refused file: {allowed_files(supplied)}")
        groups.append("the workflow names files it may not read:")
        for refusal in refusals:
            groups.append(f"- {refusal_line(refusal)}")
            add(refusal.node_id, refusal.class_type, refusal_item(refusal))
    message = "\n".join([f"the workflow cannot run as sent: {'; '.join(counts)}. To fix:", *fixes, *groups])
    details: dict[str, Any] = {
        "unknown_node_types": [{"class_type": name, "node_ids": ids} for name, ids in unknown.items()] or None,
        "missing_models": [_missing_detail(model) for model in missing] or None,
        "refused_files": [_refusal_detail(refusal) for refusal in refusals] or None,
    }
    cls = UnknownNode if unknown else MissingModel if missing else WorkflowInvalid
    return cls(message, node_errors=node_errors, **details)


def _model_problem(model: _Missing) -> str:
    where = f"models/{model.folder}/"
    if not model.installed:
        return f"{clip(repr(model.received))} is not installed, and no model is installed in {where}"
    shown = ", ".join(map(repr, model.installed[:20])) + (" ..." if len(model.installed) > 20 else "")
    return f"{clip(repr(model.received))} is not in {where}; choose one of: {clip(shown, 1000)}"


def _missing_detail(model: _Missing) -> dict[str, Any]:
    return {
        "node_id": model.node_id,
        "class_type": model.class_type,
        "input": model.input,
        "received": model.received,
        "folder": model.folder,
        "installed": model.installed,
    }


def _refusal_detail(refusal: Refusal) -> dict[str, Any]:
    return {
        "node_id": refusal.node_id,
        "class_type": refusal.class_type,
        "input": refusal.input,
        "received": refusal.received,
        "reason": refusal.reason,
    }


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


__all__ = ["Prepared", "preflight", "url_file_name"]
