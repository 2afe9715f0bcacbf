"""Which files a workflow may name: the ones its own request supplied, and models ComfyUI lists.

ComfyUI itself lets a LoadImage value read any file of its input folder (other requests' uploads),
`name [output]` or `name [temp]` (other requests' outputs, whose names are counters), `../x` or an
absolute path (any image on disk, on 0.3.75), and LoadImageOutput or a custom "Load Image (Path)"
node whatever they name. `Runner.run` checks every workflow here before it uploads or queues
anything, so /predict, inbox and batch items and the CLI all get the same rule:

    a file input: ComfyUI marks it `image_upload`,      a file this request supplied, by its bare name
    `audio_upload`, `video_upload`, `file_upload`;      ->  rewritten to the run's own subfolder
    or a core node's input-folder choice (LoadLatent)   anything else, or a link from another node
                                                        ->  refused
    any list input (models, samplers, ...)              `..`, an absolute path, a drive letter, NUL,
                                                        an annotation ([output], [temp], [input]), or
                                                        the runs' folder  ->  refused
    a node that reads beyond the request's files:       refused unless ALLOW_OUTPUT_INPUTS
    LoadImageOutput (`image_folder: "output"`), a
    node named for paths or folders, an input named
    `path`, `image_path`, `directory`, ...

Every refusal is one WorkflowInvalid (400) that names each node and input and says what is allowed;
`Runner.run` reports them through job/engine/preflight.py (`check_files`), in one error with the
workflow's unknown node types and missing models. A file input whose value is an https:// or gs://
URL is fetched first (preflight) and named like a supplied file. A list input's value is otherwise
ComfyUI's to check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from job.comfyui.compat import input_spec, is_combo, names_a_file, reads_outside_input
from job.errors import WorkflowInvalid, clip

RUNS_FOLDER = "_runs"  # under ComfyUI's input folder: one subfolder per run holds its uploads
FRESH_OUTPUT_INPUT = "worker_comfyui_run"  # see fresh_outputs

# Core nodes that read a file of the input folder (or of the datasets folder) that ComfyUI does not
# mark as an upload: (class, input) of the first kind, classes of the second.
_INPUT_FOLDER_READERS = frozenset(
    {("LoadLatent", "latent"), ("WebcamCapture", "image"), ("Load3D", "image"), ("Load3DAdvanced", "image")}
)
_OUTPUT_FOLDER = "reads ComfyUI's output folder, which holds other requests' files"
_OUTSIDE_READERS = {
    "LoadImageOutput": _OUTPUT_FOLDER,
    "LoadTrainingDataset": "reads the datasets folder, where any run's SaveTrainingDataset writes",
}
# How custom nodes that read files by path or by folder are named ("Load Image (Path)", VHS_LoadImagePath,
# "LoadImagesFromDir //Inspire", WAS's "Image Load" with `image_path`, VHS_LoadImages with `directory`).
_PATH_CLASS = re.compile(r"load.*(path|from ?_?(dir|folder)|director)", re.IGNORECASE)
_PATH_INPUTS = frozenset(
    {
        "path", "file_path", "filepath", "image_path", "video_path", "audio_path", "mask_path", "audio_file",
        "folder", "folder_path", "dir", "dir_path", "directory", "input_dir", "input_path", "image_dir",
        "images_dir", "video_dir",
    }
)  # fmt: skip
_ANNOTATIONS = ("[output]", "[temp]", "[input]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_ALLOWED = "a file input may name only a file this request sends in `images` or `inputs`, by that name"


@dataclass(frozen=True)
class Refusal:
    """One file input (or a whole node, `input` None) the policy refuses, and why."""

    node_id: str
    class_type: str
    input: str | None
    reason: str
    received: Any = None


def apply_file_policy(
    workflow: Mapping[str, Any],
    *,
    supplied: Mapping[str, str],
    classes: Mapping[str, dict[str, Any]],
    allow_outside: bool = False,
) -> dict[str, Any]:
    """A copy of `workflow` whose file inputs name the run's own files; WorkflowInvalid listing every refusal.

    `supplied` maps each name the request sent to the value a loader takes for it (its run subfolder);
    `classes` holds ComfyUI's /object_info entries of the workflow's classes (unknown ones are absent).
    """
    result, refusals = check_files(workflow, supplied=supplied, classes=classes, allow_outside=allow_outside)
    if refusals:
        raise refused_error(refusals, supplied)
    return result


def check_files(
    workflow: Mapping[str, Any],
    *,
    supplied: Mapping[str, str],
    classes: Mapping[str, dict[str, Any]],
    allow_outside: bool = False,
) -> tuple[dict[str, Any], list[Refusal]]:
    """`apply_file_policy` without the raise: the rewritten copy and every refusal, for a report that
    lists them beside the workflow's other problems (job/engine/preflight.py)."""
    check = _Check(supplied, allow_outside)
    result: dict[str, Any] = {}
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            result[node_id] = node
            continue
        class_type = str(node.get("class_type"))
        result[node_id] = {
            **node,
            "inputs": check.node(str(node_id), class_type, classes.get(class_type), node["inputs"]),
        }
    return result, check.refusals


def is_file_input(class_type: str, info: dict[str, Any] | None, name: str) -> bool:
    """Whether `name` of `class_type` names a file of the input folder: what only the request's own
    files may fill (ComfyUI's `*_upload` mark, or a core node's input-folder choice), and what a URL
    value may fill (job/engine/preflight.py fetches it)."""
    spec = input_spec(info, name) if info is not None else None
    return _names_input_file(class_type, name, spec) and not _reads_outside(class_type, info)


def _names_input_file(class_type: str, name: str, spec: tuple[Any, dict[str, Any]] | None) -> bool:
    return (class_type, name) in _INPUT_FOLDER_READERS or (spec is not None and names_a_file(spec))


@dataclass
class _Check:
    supplied: Mapping[str, str]
    allow_outside: bool
    refusals: list[Refusal] = field(default_factory=list)

    def node(
        self, node_id: str, class_type: str, info: dict[str, Any] | None, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        """The node's inputs for the run (supplied files rewritten); refusals are collected."""
        outside = _reads_outside(class_type, info)
        if outside:
            if not self.allow_outside:
                self.refusals.append(Refusal(node_id, class_type, None, outside))
            return dict(inputs)
        return {name: self.input(node_id, class_type, info, name, value) for name, value in inputs.items()}

    def input(self, node_id: str, class_type: str, info: dict[str, Any] | None, name: str, value: Any) -> Any:
        def refuse(reason: str, received: Any = None) -> None:
            self.refusals.append(Refusal(node_id, class_type, name, reason, received))

        spec = input_spec(info, name) if info is not None else None
        is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
        if name in _PATH_INPUTS and not self.allow_outside and (is_link or (isinstance(value, str) and value)):
            refuse("takes a path, which may name anyone's files", value)
        elif _names_input_file(class_type, name, spec):
            if is_link:
                refuse("must name its file itself, not take it from a link")
                return value
            return _own_files(value, refuse, self.supplied)
        elif spec is not None and is_combo(spec) and isinstance(value, str):
            problem = _path_problem(value)
            if problem:
                refuse(problem, value)
        return value


def fresh_outputs(workflow: Mapping[str, Any], output_nodes: frozenset[str], token: str) -> dict[str, Any]:
    """Give each output node an input its class ignores, unique to this run, so ComfyUI runs it again.

    ComfyUI does not rerun an output node whose inputs did not change: it re-reports the files of an
    earlier run, perhaps another request's, which that run deleted once read (docs/api.md section 2).
    """
    return {
        node_id: {**node, "inputs": {**node["inputs"], FRESH_OUTPUT_INPUT: token}} if node_id in output_nodes else node
        for node_id, node in workflow.items()
    }


def _reads_outside(class_type: str, info: dict[str, Any] | None) -> str | None:
    """Why the whole node reads beyond the request's files, or None."""
    display = str((info or {}).get("display_name") or "")
    if class_type in _OUTSIDE_READERS:
        return _OUTSIDE_READERS[class_type]
    if any(reads_outside_input(spec) for name in _declared(info) if (spec := input_spec(info or {}, name))):
        return _OUTPUT_FOLDER
    if _PATH_CLASS.search(class_type) or _PATH_CLASS.search(display):
        return "reads files by path or by folder, which may be anyone's"
    return None


def _own_files(value: Any, refuse: Callable[[str, Any], None], supplied: Mapping[str, str]) -> Any:
    """`value` (a name, or names inside a dict or list, as Load3D's) with each supplied name rewritten."""
    if isinstance(value, dict):
        return {key: _own_files(item, refuse, supplied) for key, item in value.items()}
    if isinstance(value, list):
        return [_own_files(item, refuse, supplied) for item in value]
    if not isinstance(value, str) or value == "":
        return value
    problem = _path_problem(value)
    if problem:
        refuse(problem, value)
    elif value in supplied:
        return supplied[value]
    else:
        refuse("is not a file this request supplied", value)
    return value


def _path_problem(value: str) -> str | None:
    """What makes `value` reach outside the folder a list input picks from, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if value.rstrip().endswith(_ANNOTATIONS):
        return "names another folder with an annotation ([output], [temp], [input])"
    if value.startswith(("/", "\\", "~")) or _DRIVE.match(value):
        return "is an absolute path"
    parts = re.split(r"[/\\]", value)
    if ".." in parts:
        return "climbs out of its folder with '..'"
    if parts[0] == RUNS_FOLDER:
        return "names another request's files"
    return None


def _declared(info: dict[str, Any] | None) -> list[str]:
    inputs = (info or {}).get("input") or {}
    return [name for section in ("required", "optional") for name in (inputs.get(section) or {})]


def allowed_files(supplied: Mapping[str, str]) -> str:
    """What a file input may name, with the names this request sent: the fix every refusal ends with."""
    return (
        f"{_ALLOWED} (this request sent: {sent_names(supplied)}), or an https:// or gs:// URL as the value "
        "(fetched like `inputs`); a model only as one of the choices ComfyUI lists (GET /models). "
        "LoadImageOutput and nodes that read by path or folder need the operator's ALLOW_OUTPUT_INPUTS=true."
    )


def refusal_line(refusal: Refusal) -> str:
    """The refusal as one line of an error message: node, class, input, the value cut, why."""
    where = f"input {refusal.input!r}: " if refusal.input else ""
    shown = f"{clip(repr(refusal.received))} " if refusal.received is not None else ""
    return f"node {refusal.node_id} ({refusal.class_type}) {where}{shown}{refusal.reason}"


def refusal_item(refusal: Refusal) -> dict[str, Any]:
    """The refusal as an entry of the error's node_errors (`file_not_allowed`)."""
    error: dict[str, Any] = {"type": "file_not_allowed", "input": refusal.input, "message": refusal.reason}
    if refusal.received is not None:
        error["received"] = refusal.received
    return error


def sent_names(supplied: Mapping[str, str]) -> str:
    """The names a request supplied, as a refusal names them: `'a.png', 'b.png'`, or `none`."""
    return ", ".join(map(repr, sorted(supplied))) or "none"


def refused_error(refusals: list[Refusal], supplied: Mapping[str, str]) -> WorkflowInvalid:
    """One WorkflowInvalid naming every refused node and input, and what is allowed instead."""
    lines: list[str] = []
    node_errors: dict[str, Any] = {}
    for refusal in refusals:
        lines.append(f"- {refusal_line(refusal)}")
        entry = node_errors.setdefault(refusal.node_id, {"class_type": refusal.class_type, "errors": []})
        entry["errors"].append(refusal_item(refusal))
    return WorkflowInvalid(
        "the workflow names files it may not read:\n" + "\n".join(lines) + f"\n{allowed_files(supplied)}",
        node_errors=node_errors,
    )
