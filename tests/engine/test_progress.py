"""Progress from a real model path: tiny TAESD weights made here, decoded tile by tile on CPU."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from job.comfyui.tracker import Progress
from job.engine.runner import Runner
from tests.support.taesd import write_taesd

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the session's or the test's own


@pytest.mark.slow
def test_tiled_vae_decode_reports_step_progress_for_its_node(runner: Runner, comfy_base: Path) -> None:
    write_taesd(comfy_base / "models" / "vae_approx")
    workflow = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "VAEDecodeTiled",
            "inputs": {
                "samples": ["2", 0],
                "vae": ["1", 0],
                "tile_size": 64,
                "overlap": 16,
                "temporal_size": 64,
                "temporal_overlap": 8,
            },
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "taesd"}},
    }
    seen: list[tuple[str, str | None, str | None, int, int]] = []

    def record(p: Progress) -> None:  # the tracker reuses one Progress object: copy what it says now
        seen.append((p.state, p.node, p.class_type, p.value, p.max))

    result = runner.run(workflow, timeout_s=120, on_progress=record)

    steps = [(value, most) for state, node, class_type, value, most in seen if node == "3" and most > 0]
    assert steps, f"no progress with value/max for the decode node; saw {seen}"
    assert {class_type for _, node, class_type, _, most in seen if node == "3" and most} == {"VAEDecodeTiled"}
    values = [value for value, _ in steps]
    assert values == sorted(values) and values[-1] == steps[-1][1], "steps should climb to max"
    assert len(steps) > 1
    (output,) = result.files
    assert Image.open(io.BytesIO(output.data)).size == (64, 64)
