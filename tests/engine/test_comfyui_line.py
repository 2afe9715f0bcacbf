"""The tests run on the ComfyUI line they say: the pinned one in the main run, the old one in the
compatibility run (CI sets EXPECT_COMFYUI_VERSION for each), and both lines' answers are read."""

from __future__ import annotations

import uuid

import pytest

from job.comfyui.compat import new_prompt_id
from job.comfyui.pins import PINS
from job.engine.runner import Runner
from job.errors import UnknownNode
from job.settings import Settings
from tests.support.comfy import expected_comfyui_version

pytestmark = pytest.mark.comfyui


def test_the_session_comfyui_reports_the_expected_line(runner: Runner, comfy_settings_session: Settings) -> None:
    version = runner.client.system_stats()["system"]["comfyui_version"]
    assert version == expected_comfyui_version(comfy_settings_session)
    assert version in {PINS.comfyui, PINS.horde_comfyui}, f"ComfyUI {version} is neither line the driver knows"


def test_our_prompt_ids_are_the_canonical_form_every_line_accepts() -> None:
    prompt_id = new_prompt_id()
    assert str(uuid.UUID(prompt_id)) == prompt_id


def test_every_unknown_node_answer_names_the_node_on_this_line(runner: Runner) -> None:
    workflow = {
        "1": {"class_type": "NoSuchNodeAnywhere", "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "line"}},
    }
    with pytest.raises(UnknownNode) as caught:
        runner.run(workflow, timeout_s=30)
    assert caught.value.node_errors["1"]["class_type"] == "NoSuchNodeAnywhere"
    assert "'NoSuchNodeAnywhere' is not installed" in str(caught.value)
