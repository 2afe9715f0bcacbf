"""Successful runs on the session's real ComfyUI: every output file, its bytes, and where it lands."""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

import pytest
from PIL import Image

from job.engine.response import success_body
from job.engine.runner import Runner
from tests.support.comfy import invert_workflow

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the session's or the test's own

ORANGE = 0xFF8000
BLUE = 0x0000FF


def _empty(width: int, height: int, batch: int, color: int) -> dict[str, Any]:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": height, "batch_size": batch, "color": color},
    }


def _save(source: str, prefix: str, class_type: str = "SaveImage") -> dict[str, Any]:
    return {"class_type": class_type, "inputs": {"images": [source, 0], "filename_prefix": prefix}}


def _image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_run_returns_every_file_of_several_output_nodes_and_a_batch(runner: Runner) -> None:
    tag = uuid.uuid4().hex[:8]
    workflow = {
        "1": _empty(40, 24, 3, ORANGE),
        "2": _save("1", f"batch-{tag}"),
        "3": _empty(16, 16, 1, BLUE),
        "4": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}},
        "5": _save("4", f"single-{tag}"),
        "6": _save("3", f"preview-{tag}", class_type="PreviewImage"),
    }

    result = runner.run(workflow, timeout_s=60)

    assert set(result.outputs) == {"2", "5", "6"}
    assert [(f.ref.node_id, f.content_type) for f in result.files] == [("2", "image/png")] * 3 + [("5", "image/png")]
    batch = [_image(f.data) for f in result.files if f.ref.node_id == "2"]
    assert {img.size for img in batch} == {(40, 24)}
    assert {img.convert("RGB").getpixel((5, 5)) for img in batch} == {(0xFF, 0x80, 0x00)}
    (single,) = [_image(f.data) for f in result.files if f.ref.node_id == "5"]
    assert single.convert("RGB").getpixel((0, 0)) == (0xFF, 0xFF, 0x00)  # inverse of blue
    assert len({f.filename for f in result.files}) == 4
    assert all(f.filename.startswith(("batch-", "single-")) and f.size == len(f.data) > 0 for f in result.files)
    assert result.timings.total_s > 0


def test_temp_outputs_are_returned_only_when_asked(runner: Runner) -> None:
    workflow = {"1": _empty(8, 8, 1, BLUE), "2": _save("1", "kept"), "3": _save("1", "tmp", "PreviewImage")}

    default = runner.run(workflow, timeout_s=60)
    with_temp = runner.run(workflow, timeout_s=60, include_temp=True)

    assert [f.ref.folder_type for f in default.files] == ["output"]
    assert sorted(f.ref.folder_type for f in with_temp.files) == ["output", "temp"]


def test_uploaded_input_is_consumed_by_load_image(runner: Runner) -> None:
    source = Image.new("RGB", (24, 16))
    source.putdata([(x * 10, y * 15, (x * y) % 256) for y in range(16) for x in range(24)])
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    name = f"gradient-{uuid.uuid4().hex[:8]}.png"

    result = runner.run(invert_workflow(name, prefix="inverted"), inputs={name: buffer.getvalue()}, timeout_s=60)

    (output,) = result.files
    inverted = _image(output.data).convert("RGB")
    assert inverted.size == source.size
    # SaveImage truncates 255 * (1 - v / 255), so an exact inverse may come out one lower.
    misses = [(a, b) for a, b in zip(source.tobytes(), inverted.tobytes(), strict=True) if not 0 <= 255 - a - b <= 1]
    assert misses == []


def test_animated_webp_lands_among_files_not_images(runner: Runner) -> None:
    colors = [0xFF0000, 0x00FF00, 0x0000FF]
    workflow: dict[str, Any] = {str(i + 1): _empty(32, 32, 1, color) for i, color in enumerate(colors)}
    workflow["4"] = {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}}
    workflow["5"] = {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["3", 0]}}
    workflow["6"] = {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {
            "images": ["5", 0], "filename_prefix": "anim", "fps": 4.0,
            "lossless": True, "quality": 80, "method": "fastest",
        },
    }  # fmt: skip

    result = runner.run(workflow, timeout_s=60)
    body = success_body(result, result.files)

    assert body["status"] == "success"
    assert body["images"] == []
    (entry,) = body["files"]
    assert entry["node_id"] == "6"
    assert entry["content_type"] == "image/webp"
    assert entry["filename"].endswith(".webp")
    animation = _image(base64.b64decode(entry["data"]))
    assert getattr(animation, "n_frames", 1) == 3
    assert body["outputs"]["6"]["animated"] == [True]
    assert body["prompt_id"] == result.prompt_id
    assert set(body["timings"]) == {"queue_s", "execution_s", "total_s"}
