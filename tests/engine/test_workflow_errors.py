"""Workflows ComfyUI refuses: each comes back as a typed error that names the node and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from job.engine.runner import Runner
from job.errors import MissingModel, UnknownNode, WorkflowInvalid

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the session's or the test's own


def _save(source: str) -> dict[str, Any]:
    return {"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": "refused"}}


def test_unknown_node_type_is_named(runner: Runner) -> None:
    workflow = {"1": {"class_type": "NoSuchUpscaler", "inputs": {}}, "2": _save("1")}

    with pytest.raises(UnknownNode) as caught:
        runner.run(workflow, timeout_s=30)

    error = caught.value
    assert "node 1: node type 'NoSuchUpscaler' is not installed" in error.message
    assert error.node_errors is not None
    assert error.node_errors["1"]["class_type"] == "NoSuchUpscaler"
    assert [item["type"] for item in error.node_errors["1"]["errors"]] == ["unknown_node"]
    assert error.to_body()["error"]["type"] == "unknown_node"


def test_bad_input_value_names_the_node_and_input(runner: Runner) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "2": _save("1"),
    }

    with pytest.raises(WorkflowInvalid) as caught:
        runner.run(workflow, timeout_s=30)

    error = caught.value
    assert type(error) is WorkflowInvalid
    assert error.node_errors is not None
    (item,) = error.node_errors["1"]["errors"]
    assert error.node_errors["1"]["class_type"] == "EmptyImage"
    assert item["input"] == "width"
    assert item["type"] == "value_smaller_than_min"
    assert "node 1 (EmptyImage) input 'width'" in error.message
    assert error.status_code == 400


def test_missing_model_lists_the_models_comfyui_offers(runner: Runner, comfy_base: Path) -> None:
    runner.client.object_info()  # a long-lived runner has seen the model lists before the file arrived
    checkpoints = comfy_base / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / "tiny-dummy.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    workflow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
        "4": _save("3"),
    }

    with pytest.raises(MissingModel) as caught:
        runner.run(workflow, timeout_s=30)

    error = caught.value
    assert error.node_errors is not None
    (item,) = error.node_errors["1"]["errors"]
    assert error.node_errors["1"]["class_type"] == "CheckpointLoaderSimple"
    assert item["input"] == "ckpt_name"
    assert item["received"] == "sd_xl_base_1.0.safetensors"
    assert "tiny-dummy.safetensors" in item["choices"]
    assert "choose one of: " in error.message and "'tiny-dummy.safetensors'" in error.message
    assert error.to_body()["error"]["type"] == "missing_model"
