"""Never an empty success: a graph that only previews returns its previews, one that saves returns
its saves, and one that leaves nothing at all is refused with what to add. Through the engine's core
(`run_request`, what /predict, inbox and batch items and the CLI share), on the session's ComfyUI."""

from __future__ import annotations

import base64
import io
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from job.comfyui.outputs import reports_data
from job.engine.core import Completed, RunOptions, run_request
from job.engine.request import parse_request
from job.engine.runner import Runner
from job.errors import WorkflowInvalid
from tests.support.comfy import comfy_files

pytestmark = pytest.mark.comfyui


def _empty(size: int, color: int) -> dict[str, Any]:
    return {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": color}}


def _run(runner: Runner, workflow: dict[str, Any], **request: Any) -> Completed:
    return run_request(parse_request({"workflow": workflow, **request}), runner, RunOptions(timeout_s=60))


def _offers(runner: Runner, *class_types: str) -> bool:
    return set(class_types) <= set(runner.client.class_info(class_types))


def test_a_graph_that_only_previews_returns_its_previews_marked_temp(runner: Runner, comfy_base: Path) -> None:
    before = comfy_files(comfy_base)
    workflow = {"1": _empty(16, 0x00FF00), "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}

    completed = _run(runner, workflow)

    body = completed.body
    assert body["status"] == "success"
    (entry,) = body["images"]
    assert entry["type"] == "temp", "a preview says it is one"
    assert entry["node_id"] == "2"
    assert entry["content_type"] == "image/png"
    with Image.open(io.BytesIO(base64.b64decode(entry["image"]))) as img:
        assert img.size == (16, 16)
        assert img.convert("RGB").getpixel((3, 3)) == (0, 0xFF, 0)
    assert body["files"] == []
    assert body["outputs"]["2"]["images"][0]["type"] == "temp"
    assert comfy_files(comfy_base) == before, "the preview is deleted from ComfyUI's temp folder once read"


def test_previews_converted_like_saves_when_a_format_is_asked(runner: Runner) -> None:
    workflow = {"1": _empty(8, 0x0000FF), "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}

    (entry,) = _run(runner, workflow, output={"format": "webp"}).body["images"]

    assert (entry["type"], entry["content_type"]) == ("temp", "image/webp")
    assert entry["filename"].endswith(".webp")


def test_beside_a_save_previews_are_not_returned(runner: Runner, comfy_base: Path) -> None:
    before = comfy_files(comfy_base)
    tag = uuid.uuid4().hex[:8]
    workflow = {
        "1": _empty(8, 0xFF0000),
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"saved-{tag}"}},
    }

    body = _run(runner, workflow).body

    assert [(entry["node_id"], entry["type"]) for entry in body["images"]] == [("3", "output")]
    assert body["images"][0]["filename"].startswith(f"saved-{tag}")
    assert set(body["outputs"]) == {"2", "3"}, "outputs still lists what ComfyUI reported"
    assert comfy_files(comfy_base) == before, "the unreturned preview is deleted too"


def test_a_run_that_leaves_nothing_is_refused_with_what_to_add(runner: Runner, comfy_base: Path) -> None:
    # SaveImageDataSetToFolder writes to a folder of its own and reports nothing (no UI output): the
    # run has nothing to hand back, which would have been an empty success.
    if not _offers(runner, "SaveImageDataSetToFolder"):
        pytest.skip("this ComfyUI line has no SaveImageDataSetToFolder")
    folder = f"nothing-{uuid.uuid4().hex[:8]}"
    workflow = {
        "1": _empty(8, 0x808080),
        "2": {
            "class_type": "SaveImageDataSetToFolder",
            "inputs": {"images": ["1", 0], "folder_name": folder, "filename_prefix": "img", "mode": "overwrite"},
        },
    }

    try:
        with pytest.raises(WorkflowInvalid) as refused:
            _run(runner, workflow)
    finally:
        shutil.rmtree(comfy_base / "output" / folder, ignore_errors=True)  # its files, which no one reported

    error = refused.value.to_dict()
    assert (refused.value.status_code, error["type"]) == (400, "workflow_invalid")
    assert "add a Save node (SaveImage, SaveAudio, SaveVideo, ...)" in error["message"]


def test_a_graph_whose_outputs_are_text_is_a_success(runner: Runner) -> None:
    if not _offers(runner, "PrimitiveString", "PreviewAny"):
        pytest.skip("this ComfyUI line has no PrimitiveString/PreviewAny")
    workflow = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "a fox in the snow"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }

    body = _run(runner, workflow).body

    assert body["status"] == "success"
    assert (body["images"], body["files"]) == ([], [])
    assert body["outputs"]["2"]["text"] == ["a fox in the snow"]


def test_what_counts_as_data_beside_files() -> None:
    image = {"filename": "a.png", "subfolder": "", "type": "temp"}
    assert not reports_data({"1": {"images": [image], "animated": [False]}}), "files and their flags are no data"
    assert not reports_data({"1": {"images": []}, "2": {}})
    assert reports_data({"1": {"images": [image]}, "2": {"text": ["hello"]}})
