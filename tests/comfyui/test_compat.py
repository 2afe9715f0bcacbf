"""Both ComfyUI lines' answers, as each sends them (recorded from 0.3.75 and 0.33.0), read alike."""

from __future__ import annotations

import pytest

from job.comfyui.compat import input_choices, is_output_node, unknown_node_refusal
from job.comfyui.validation import prompt_error
from job.errors import UnknownNode

UNKNOWN_NODE = {
    "0.3.75": {
        "type": "invalid_prompt",
        "message": "Cannot execute because node NoSuchNode does not exist.",
        "details": "Node ID '#7'",
        "extra_info": {},
    },
    "0.33.0": {
        "type": "missing_node_type",
        "message": "Node 'NoSuchNode' not found. The custom node may not be installed.",
        "details": "Node ID '#7'",
        "extra_info": {"node_id": "7", "class_type": "NoSuchNode", "node_title": "NoSuchNode"},
    },
}


@pytest.mark.parametrize("line", sorted(UNKNOWN_NODE))
def test_an_unknown_node_is_recognised_on_either_line(line: str) -> None:
    refusal = unknown_node_refusal(UNKNOWN_NODE[line])
    assert refusal is not None and refusal.node_id == "7"

    error = prompt_error({"error": UNKNOWN_NODE[line], "node_errors": {}}, {"7": {"class_type": "NoSuchNode"}}, dict)

    assert isinstance(error, UnknownNode)
    assert error.node_errors == {
        "7": {
            "class_type": "NoSuchNode",
            "errors": [{"type": "unknown_node", "message": UNKNOWN_NODE[line]["message"]}],
        }
    }


def test_other_refusals_are_not_taken_for_an_unknown_node() -> None:
    assert unknown_node_refusal({"type": "prompt_no_outputs", "message": "Prompt has no outputs"}) is None
    assert unknown_node_refusal({"type": "invalid_prompt_id", "message": "prompt_id must be a valid UUID"}) is None
    assert unknown_node_refusal({"type": "invalid_prompt", "message": "Cannot execute: bad link"}) is None


def test_list_choices_are_read_in_both_schema_spellings() -> None:
    info = {
        "LoadAudio": {"input": {"required": {"audio": ["COMBO", {"options": ["a.wav", "b.flac"]}]}}},  # 0.33
        "VAELoader": {"input": {"required": {"vae_name": [["pixel_space", "x.safetensors"], {}]}}},  # both
        "SaveVideo": {"input": {"optional": {"format": ["COMBO", {"options": ["auto", "mp4"]}]}}},
    }
    assert input_choices(info, "LoadAudio", "audio") == ["a.wav", "b.flac"]
    assert input_choices(info, "VAELoader", "vae_name") == ["pixel_space", "x.safetensors"]
    assert input_choices(info, "SaveVideo", "format") == ["auto", "mp4"]
    assert input_choices(info, "SaveVideo", "codec") == []


def test_an_output_node_is_known_by_its_flag_not_by_declaring_no_outputs() -> None:
    save_image_033 = {"output": ["IMAGE"], "output_node": True}  # 0.33 passes the images through
    save_image_0375 = {"output": [], "output_node": True}
    create_video = {"output": ["VIDEO"], "output_node": False}
    assert is_output_node(save_image_033) and is_output_node(save_image_0375)
    assert not is_output_node(create_video)
