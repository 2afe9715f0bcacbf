"""One look before queueing names everything a workflow needs fixed, in one error, on the real ComfyUI.

Unknown node types (grouped by type), missing models (with their models/ folder, what is installed
there and how to add one) and files the request did not send come back together; nothing reaches
ComfyUI and nothing is uploaded. What only ComfyUI can judge still comes from its 400, which names
every node too (job/comfyui/validation.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from job.comfyui.compat import new_prompt_id
from job.comfyui.model_folders import PLACEHOLDERS
from job.comfyui.process import ComfyServer
from job.engine.preflight import preflight
from job.engine.runner import Runner
from job.errors import MESSAGE_LIMIT, MissingModel, UnknownNode, WorkflowInvalid
from tests.support.comfy import comfy_files, png_bytes

pytestmark = pytest.mark.comfyui


def _history_size(server: ComfyServer) -> int:
    """How many prompts ComfyUI has run: a refused workflow must not add one."""
    return len(httpx.get(f"{server.base_url}/history", timeout=30).json())


def _save(source: str, prefix: str = "preflight") -> dict[str, Any]:
    return {"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": prefix}}


_MODEL_SUFFIXES = {".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".pkl", ".pt2"}


def _installed(comfy_base: Path, folder: str) -> list[str]:
    """The model files in the session ComfyUI's models/<folder>/, as ComfyUI lists them."""
    place = comfy_base / "models" / folder
    return sorted(path.relative_to(place).as_posix() for path in place.rglob("*") if path.suffix in _MODEL_SUFFIXES)


BROKEN: dict[str, Any] = {
    # three node types ComfyUI lacks, one of them used twice (as a replayed real-world graph does)
    "10": {"class_type": "DWPreprocessor", "inputs": {"image": ["20", 0]}},
    "11": {"class_type": "DWPreprocessor", "inputs": {"image": ["20", 0]}},
    "12": {"class_type": "Zoe-DepthMapPreprocessor", "inputs": {"image": ["20", 0]}},
    "13": {"class_type": "LineArtPreprocessor", "inputs": {"image": ["20", 0]}},
    # two models that are not installed
    "30": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "31": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
    # an input image the request did not send
    "20": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    "40": _save("10"),
}


def test_unknown_types_missing_models_and_a_missing_file_come_back_in_one_answer(
    runner: Runner, comfy_server: ComfyServer, comfy_base: Path
) -> None:
    before_files, before_runs = comfy_files(comfy_base), _history_size(comfy_server)

    with pytest.raises(UnknownNode) as caught:
        runner.run(BROKEN, inputs={"other.png": png_bytes()}, timeout_s=30)

    error = caught.value
    assert (error.status_code, error.error_type) == (400, "unknown_node")
    assert error.node_errors is not None
    assert set(error.node_errors) == {"10", "11", "12", "13", "20", "30", "31"}, "every node with a problem"
    assert error.details["unknown_node_types"] == [
        {"class_type": "DWPreprocessor", "node_ids": ["10", "11"]},
        {"class_type": "Zoe-DepthMapPreprocessor", "node_ids": ["12"]},
        {"class_type": "LineArtPreprocessor", "node_ids": ["13"]},
    ]
    models = {item["node_id"]: item for item in error.details["missing_models"]}
    assert set(models) == {"30", "31"}
    assert (models["30"]["input"], models["30"]["folder"]) == ("ckpt_name", "checkpoints")
    assert (models["31"]["input"], models["31"]["folder"], models["31"]["received"]) == (
        "vae_name",
        "vae",
        "sdxl_vae.safetensors",
    )
    assert models["30"]["installed"] == _installed(comfy_base, "checkpoints")
    assert models["31"]["installed"] == _installed(comfy_base, "vae"), "files only: no pixel_space, no taesd"
    [refused] = error.details["refused_files"]
    assert (refused["node_id"], refused["input"], refused["received"]) == ("20", "image", "photo.png")
    assert [item["type"] for item in error.node_errors["20"]["errors"]] == ["file_not_allowed"]
    assert [item["type"] for item in error.node_errors["31"]["errors"]] == ["value_not_in_list"]

    message = error.message
    assert message.startswith("the workflow cannot run as sent: 3 node types are not installed; 2 models are missing")
    for line in (
        "- nodes 10, 11: node type 'DWPreprocessor' is not installed",
        "- node 12: node type 'Zoe-DepthMapPreprocessor' is not installed",
        "- node 13: node type 'LineArtPreprocessor' is not installed",
        "- node 30 (CheckpointLoaderSimple) input 'ckpt_name': 'sd_xl_base_1.0.safetensors' is not",
        "- node 31 (VAELoader) input 'vae_name': 'sdxl_vae.safetensors' is not",
        "- node 20 (LoadImage) input 'image': 'photo.png' is not a file this request supplied",
    ):
        assert line in message, line
    assert "models/checkpoints/" in message and "models/vae/" in message, "the folder each model goes in"
    for how in ("custom_nodes.txt", "docs/customization.md", "MODELS_URI", "MODELS_MOUNT", "MODEL_TYPE"):
        assert how in message, how
    assert "this request sent: 'other.png'" in message and "https:// or gs:// URL" in message
    assert "pixel_space" not in message and "pixel_space" not in str(error.to_body())
    assert comfy_files(comfy_base) == before_files, "nothing uploaded"
    assert _history_size(comfy_server) == before_runs, "nothing queued"


def test_missing_models_alone_are_missing_model_with_folder_and_no_placeholder(
    runner: Runner, comfy_base: Path
) -> None:
    workflow = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "4": _save("3"),
    }

    with pytest.raises(MissingModel) as caught:
        runner.run(workflow, timeout_s=30)

    error = caught.value
    assert error.error_type == "missing_model"
    assert set(error.node_errors or {}) == {"1", "2"}
    [vae] = (error.node_errors or {})["1"]["errors"]
    assert (vae["input"], vae["received"], vae["folder"]) == ("vae_name", "ae.safetensors", "vae")
    assert not set(vae["choices"]) & PLACEHOLDERS
    assert "pixel_space" not in error.message
    if not _installed(comfy_base, "vae"):
        assert "no model is installed in models/vae/" in error.message
    assert "node 2 (UNETLoader) input 'unet_name'" in error.message and "models/diffusion_models/" in error.message
    assert "unknown_node_types" not in error.details and "refused_files" not in error.details


def test_a_model_that_arrived_after_the_runner_read_the_lists_is_not_called_missing(
    runner: Runner, comfy_base: Path
) -> None:
    loras = comfy_base / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["9", 0], "lora_name": "late.safetensors",
                                                              "strength_model": 1.0}},
        "9": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "nowhere.safetensors"}},
        "3": _save("1"),
    }  # fmt: skip
    with pytest.raises(MissingModel) as first:
        runner.run(workflow, timeout_s=30)
    assert {item["node_id"] for item in first.value.details["missing_models"]} == {"2", "9"}
    (loras / "late.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    try:
        with pytest.raises(MissingModel) as second:
            runner.run(workflow, timeout_s=30)  # the runner remembers LoraLoaderModelOnly's list from before
    finally:
        (loras / "late.safetensors").unlink()
    assert {item["node_id"] for item in second.value.details["missing_models"]} == {"9"}, "looked up afresh"


def test_every_unknown_type_is_in_the_details_when_the_message_is_cut(runner: Runner) -> None:
    workflow: dict[str, Any] = {
        str(index): {"class_type": f"Missing_Custom_Preprocessor_Node_With_A_Long_Name_{index:03d}", "inputs": {}}
        for index in range(100, 160)
    }
    workflow["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "absent.safetensors"}}
    workflow["8"] = _save("100")

    with pytest.raises(UnknownNode) as caught:
        runner.run(workflow, timeout_s=30)

    body = caught.value.to_body()["error"]
    assert len(body["message"]) < MESSAGE_LIMIT + 100, "cut to the limit"
    assert len(caught.value.message) > MESSAGE_LIMIT, "the whole message would not fit"
    assert len(body["unknown_node_types"]) == 60, "the list is complete"
    assert [item["node_id"] for item in body["missing_models"]] == ["9"]
    head = body["message"][:1000]
    assert "60 node types are not installed; 1 model is missing" in head, "the summary comes first"
    assert "custom_nodes.txt" in head and "MODELS_URI" in head, "so do the fixes"
    assert len(body["node_errors"]) == 61


def test_file_refusals_alone_stay_workflow_invalid(runner: Runner) -> None:
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
                "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
                "3": _save("1")}  # fmt: skip

    with pytest.raises(WorkflowInvalid) as caught:
        runner.run(workflow, inputs={"c.png": png_bytes()}, timeout_s=30)

    error = caught.value
    assert error.error_type == "workflow_invalid"
    assert [item["node_id"] for item in error.details["refused_files"]] == ["1", "2"]
    assert "'a.png' is not a file this request supplied" in error.message
    assert "'b.png' is not a file this request supplied" in error.message


# --- both lines' schema spellings (recorded shapes: 0.33's COMBO, the list both lines send) --------


@pytest.mark.parametrize(
    "spec",
    [
        [["pixel_space", "taesd", "real.safetensors"], {}],  # both lines
        ["COMBO", {"options": ["pixel_space", "taesd", "real.safetensors"]}],  # 0.33's other spelling
    ],
    ids=["list", "combo"],
)
def test_the_prepass_reads_either_schema_spelling(spec: list[Any]) -> None:
    classes = {
        "VAELoader": {"input": {"required": {"vae_name": spec}}, "category": "loaders"},
        "LoadImage": {"input": {"required": {"image": ["COMBO", {"image_upload": True, "options": []}]}}},
    }
    workflow = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "gone.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
    }
    with pytest.raises(MissingModel) as caught:
        preflight(workflow, inputs=["x.png"], folder="_runs/t", classes=classes)
    [model] = caught.value.details["missing_models"]
    assert (model["folder"], model["installed"]) == ("vae", ["real.safetensors"])
    assert "choose one of: 'real.safetensors'" in caught.value.message

    prepared = preflight({**workflow, "1": {**workflow["1"], "inputs": {"vae_name": "real.safetensors"}}},
                         inputs=["x.png"], folder="_runs/t", classes=classes)  # fmt: skip
    assert prepared.workflow["2"]["inputs"]["image"] == "_runs/t/x.png"
    assert prepared.urls == {}


# --- what comes from ComfyUI's own 400 names every node too --------------------------------------


def test_comfyuis_unknown_node_answer_is_widened_to_every_unknown_node(runner: Runner) -> None:
    workflow = {
        "1": {"class_type": "NoSuchNodeA", "inputs": {}},
        "2": {"class_type": "NoSuchNodeB", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "NoSuchNodeA", "inputs": {}},
        "4": _save("2"),
    }
    with pytest.raises(UnknownNode) as caught:  # queued directly: ComfyUI names only the first
        runner.client.queue_prompt(workflow, "preflight-test", new_prompt_id())

    error = caught.value
    assert set(error.node_errors or {}) == {"1", "2", "3"}
    assert {item["class_type"] for item in error.details["unknown_node_types"]} == {"NoSuchNodeA", "NoSuchNodeB"}
    assert "NoSuchNodeA" in error.message and "NoSuchNodeB" in error.message
    assert "custom_nodes.txt" in error.message


def test_comfyuis_missing_vae_answer_offers_no_placeholder_and_names_the_folder(runner: Runner) -> None:
    workflow = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 0]}},
        "4": _save("3"),
    }
    with pytest.raises(MissingModel) as caught:
        runner.client.queue_prompt(workflow, "preflight-test", new_prompt_id())

    [item] = (caught.value.node_errors or {})["1"]["errors"]
    assert item["type"] == "value_not_in_list" and item["folder"] == "vae"
    assert not set(item["choices"]) & PLACEHOLDERS
    assert "pixel_space" not in caught.value.message
    assert "models/vae/" in caught.value.message
