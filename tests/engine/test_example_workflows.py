"""The example workflows in workflows/ are real: ComfyUI accepts them, short of the model files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from job.engine.inputs import gather_inputs
from job.engine.request import parse_request
from job.engine.runner import Runner
from job.errors import MissingModel

pytestmark = pytest.mark.comfyui

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
MODEL_GRAPHS = sorted(WORKFLOWS.glob("*_example.json"))


def test_the_seed_model_graphs_are_all_there() -> None:
    names = {path.stem for path in MODEL_GRAPHS}
    assert names == {
        "flux1_dev_checkpoint_example",
        "flux1_dev_example",
        "flux1_schnell_example",
        "sd3_medium_example",
        "sdxl_simple_example",
    }


@pytest.mark.parametrize("path", MODEL_GRAPHS, ids=lambda p: p.stem)
def test_a_model_graph_fails_only_for_its_missing_models(runner: Runner, path: Path) -> None:
    """On a CPU box without models, ComfyUI's validation must complain about model files and nothing else."""
    request = parse_request(json.loads(path.read_text()))
    with pytest.raises(MissingModel) as caught:
        runner.run(request.workflow, timeout_s=30)
    problems = [item for entry in (caught.value.node_errors or {}).values() for item in entry["errors"]]
    assert problems, "a missing-model error names the nodes"
    assert all(item["type"] == "value_not_in_list" for item in problems), problems


def test_test_input_runs_on_cpu_with_its_inline_image(runner: Runner) -> None:
    request = parse_request(json.loads((WORKFLOWS / "test_input.json").read_text()))
    result = runner.run(request.workflow, inputs=gather_inputs(request), timeout_s=60)
    assert [f.ref.node_id for f in result.files] == ["4"]


@pytest.mark.parametrize("name", ["invert_input.json", "empty_image_batch.json"])
def test_the_model_free_graphs_run_on_cpu(runner: Runner, name: str) -> None:
    request = parse_request(json.loads((WORKFLOWS / name).read_text()))
    inputs = {"input.png": (WORKFLOWS / "input.png").read_bytes()} if name == "invert_input.json" else {}
    result = runner.run(request.workflow, inputs=inputs, timeout_s=60)
    assert result.files
