"""Where the ComfyUI lines this driver speaks differ: the pinned 0.33 and the old 0.3.75.

Every difference the driver depends on lives here, and each helper accepts both lines' shapes by
reading the answer, never by comparing version numbers: an attached ComfyUI (COMFYUI_URL) can be
either line, and a new release is judged by what it sends.

    what                         0.3.75                              0.33.0
    ---------------------------  ----------------------------------  ---------------------------------------
    prompt_id in POST /prompt    any string                          a canonical lowercase hyphenated UUID,
                                                                     else 400 `invalid_prompt_id`
    an unknown class_type        400 `invalid_prompt`, "Cannot       400 `missing_node_type`, extra_info
                                 execute because node X does not     {node_id, class_type}
                                 exist.", details "Node ID '#1'"
    a list input's schema        [[choices], {...}]                  the same, or ["COMBO", {"options": [...]}]
                                                                     (LoadAudio, SaveVideo's format ...)
    an output node's outputs     SaveImage declares none             SaveImage passes its images through, so
                                                                     only the `output_node` flag tells
    GET /api/jobs, .../cancel    absent                              present (not used: /queue and
                                                                     /interrupt serve both lines)
    a loader's `../x.png` value  joined to the input folder without  refused ("Invalid file path"); the file
                                 a check: it reads outside it        policy refuses `..` on both lines
    POST /upload/image's answer  {name, subfolder, type}             the same, plus `asset` with
                                                                     --enable-assets (ignored)

Seen in nodes' behaviour, which the driver reads the same way on both lines:

    audio file names             prefix_00001_.flac                  prefix_00001.flac (mp3, opus alike)
    SaveVideo's `codec`          a plain combo ["auto", "h264"]      a dynamic combo: the option's name is the
                                                                     value, nested options sit beside it under
                                                                     dotted names ("codec.encoding.crf"); 0.3.75
                                                                     ignores such names
    savers' own outputs          none                                SaveAudio* and SaveVideo pass theirs on
    SaveAudioAdvanced            absent                              present (format: flac, mp3, opus)
    CreateVideo                  mono audio written as stereo        mono kept; optional `bit_depth`

    An mp4 is reported under the `images` key with `animated: [true]` on both, so outputs.py sends it to
    `files` by its animation flag and content type, never by the key alone.

Alike on both (checked by the tests on each line): the websocket's message types, `progress_state`
included; /interrupt with a prompt_id stops only that prompt; `prompt_no_outputs`; node_errors
with `value_not_in_list` and `custom_validation_failed`; /history, /view, /upload/image, /queue.
And what per-request files rest on (job/engine/file_policy.py, tests/security):

    - /upload/image takes a `subfolder` form field, and LoadImage, LoadImageMask, LoadAudio and
      LoadVideo take `subfolder/name`: they check the file exists, not that it is in their choices;
    - the values `name [output]`, `name [temp]`, `name [input]` read from those folders;
    - /object_info marks file inputs with `image_upload`, `audio_upload`, `video_upload` or
      `file_upload`, and LoadImageOutput's with `image_folder: "output"`, in either schema spelling;
    - an output node whose inputs did not change is not run again: it re-reports the files of the
      earlier run. An input its class does not declare changes the node's cache key and is
      otherwise ignored, which `fresh_outputs` uses so every run writes (and may delete) its own;
    - /system_stats lists the server's `argv` (`system.argv`), which proves a child's readiness.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

_NODE_ID_DETAILS = re.compile(r"#([^']+)'")


def new_prompt_id() -> str:
    """A prompt_id both lines accept: 0.33 refuses anything but a canonical UUID."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class UnknownNodeRefusal:
    """POST /prompt refused the graph because a node's class_type is not installed."""

    node_id: str
    message: str


def unknown_node_refusal(error: dict[str, Any]) -> UnknownNodeRefusal | None:
    """The refused node, if `error` (the `error` of a 400 from POST /prompt) is an unknown-node answer."""
    kind = error.get("type", "")
    message = str(error.get("message", ""))
    if kind == "missing_node_type":  # 0.33
        node_id = (error.get("extra_info") or {}).get("node_id")
        if node_id is None:
            match = _NODE_ID_DETAILS.search(str(error.get("details", "")))
            node_id = match.group(1) if match else "?"
        return UnknownNodeRefusal(node_id=str(node_id), message=message)
    if kind == "invalid_prompt" and "does not exist" in message:  # 0.3.75
        match = _NODE_ID_DETAILS.search(str(error.get("details", "")))
        return UnknownNodeRefusal(node_id=match.group(1) if match else "?", message=message)
    return None


def input_choices(object_info: dict[str, Any], class_type: str, input_name: str) -> list[Any]:
    """The values ComfyUI offers for a list input, in either of its schema spellings."""
    inputs = (object_info.get(class_type) or {}).get("input") or {}
    for section in ("required", "optional"):
        spec = (inputs.get(section) or {}).get(input_name)
        if not spec:
            continue
        if isinstance(spec[0], list):
            return list(spec[0])
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            return list(spec[1].get("options", []))
    return []


def is_output_node(class_info: dict[str, Any]) -> bool:
    """Whether ComfyUI runs a prompt for this class (its /object_info entry); the flag, not its outputs."""
    return bool(class_info.get("output_node"))


def input_spec(class_info: dict[str, Any], input_name: str) -> tuple[Any, dict[str, Any]] | None:
    """(its type, or its list of choices; its options) for a declared input, in either schema spelling."""
    inputs = class_info.get("input") or {}
    for section in ("required", "optional"):
        spec = (inputs.get(section) or {}).get(input_name)
        if isinstance(spec, list) and spec:
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            return spec[0], options
    return None


def is_combo(spec: tuple[Any, dict[str, Any]]) -> bool:
    """A list input: `[[choices], {...}]` on both lines, or `["COMBO", {"options": [...]}]` on 0.33."""
    kind, _ = spec
    return isinstance(kind, list) or kind == "COMBO"


def names_a_file(spec: tuple[Any, dict[str, Any]]) -> bool:
    """ComfyUI marks the input as a file to upload (`image_upload`, `audio_upload`, `video_upload`, ...)."""
    _, options = spec
    return any(key.endswith("_upload") and bool(value) for key, value in options.items())


def reads_outside_input(spec: tuple[Any, dict[str, Any]]) -> bool:
    """The input picks a file from another folder than input/ (LoadImageOutput: `image_folder: "output"`)."""
    _, options = spec
    folder = options.get("image_folder")
    return isinstance(folder, str) and folder != "input"


def upload_reference(answer: dict[str, Any], name: str, subfolder: str) -> str:
    """The value a loader takes for a file /upload/image stored: `subfolder/name` as ComfyUI answered."""
    stored = str(answer.get("name") or name)
    folder = str(answer.get("subfolder", subfolder) or "")
    return f"{folder}/{stored}" if folder else stored


def server_argv(system_stats: dict[str, Any]) -> list[str] | None:
    """The answering server's command line (`sys.argv`, main.py first), or None if it does not say."""
    argv = (system_stats.get("system") or {}).get("argv")
    return [str(arg) for arg in argv] if isinstance(argv, list) else None
