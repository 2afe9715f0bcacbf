"""The one parser takes RunPod's and ComfyUI's request shapes besides ours, and `extra_data` reaches
ComfyUI's POST /prompt (the real session ComfyUI's /history shows what it received) without ever
replacing the runner's client_id or appearing in a repr or an error message."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from job.engine.core import RunOptions, run_request
from job.engine.request import parse_request
from job.engine.runner import Runner
from job.errors import InvalidRequest, UIFormatWorkflow
from tests.support.comfy import empty_image_workflow
from tests.support.waiting import wait_for

SECRET = "comfyui-" + "f" * 40
WORKFLOW = empty_image_workflow(size=8)


# --- RunPod's envelope ---------------------------------------------------------------------------


def test_runpod_input_is_our_document_with_its_comfy_org_key_in_extra_data() -> None:
    image = {"name": "in.png", "image": "aGVsbG8="}
    request = parse_request({"input": {"workflow": WORKFLOW, "images": [image], "comfy_org_api_key": SECRET}})

    assert request.workflow == WORKFLOW
    assert [(entry.name, entry.image) for entry in request.images] == [("in.png", "aGVsbG8=")]
    assert request.extra_data == {"api_key_comfy_org": SECRET}


def test_runpod_webhook_and_execution_timeout_become_ours_and_the_rest_of_policy_is_ignored() -> None:
    request = parse_request(
        {
            "input": {"workflow": WORKFLOW, "timeout_s": 300},
            "webhook": "https://example.com/hook",
            "policy": {"executionTimeout": 120_000, "ttl": 86_400_000, "lowPriority": True},
            "s3Config": {"bucketName": "ignored"},
        }
    )

    assert request.webhook == "https://example.com/hook"
    assert request.timeout_s == 120  # the shorter of the two
    assert request.extra_data is None


def test_runpod_input_may_be_a_bare_workflow_or_a_json_string() -> None:
    assert parse_request({"input": WORKFLOW}).workflow == WORKFLOW
    assert parse_request({"input": '{"workflow": {"1": {"class_type": "X", "inputs": {}}}}'}).workflow == {
        "1": {"class_type": "X", "inputs": {}}
    }


@pytest.mark.parametrize(
    ("doc", "phrase"),
    [
        ({"input": {"workflow": WORKFLOW}, "priority": 1}, "unknown top-level field(s) 'priority'"),
        ({"input": {"images": []}}, "has no `workflow` field"),
        ({"input": [1, 2]}, "`input` must be a JSON object"),
        ({"input": {"workflow": WORKFLOW}, "policy": {"executionTimeout": -5}}, "positive number of milliseconds"),
        ({"input": {"workflow": WORKFLOW}, "policy": {"executionTimeout": 10**9}}, "at most 86400000 ms"),
        ({"input": {"workflow": WORKFLOW, "comfy_org_api_key": 7}}, "must be a non-empty string"),
        ({"input": {"workflow": WORKFLOW, "webhook": "https://a.example"}, "webhook": "https://b.example"}, "differ"),
    ],
)
def test_a_malformed_runpod_body_is_a_422_naming_the_field(doc: dict[str, Any], phrase: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(doc)
    assert caught.value.status_code == 422
    assert phrase in caught.value.message


def test_a_ui_export_inside_runpods_input_gets_the_export_hint() -> None:
    ui = {"nodes": [], "links": [], "last_node_id": 0}
    with pytest.raises(UIFormatWorkflow) as caught:
        parse_request({"input": {"workflow": ui}})
    assert "Workflow > Export (API)" in caught.value.message


# --- ComfyUI's POST /prompt body -----------------------------------------------------------------


def test_comfyuis_body_is_accepted_with_its_queue_fields_and_extra_data() -> None:
    body = {
        "prompt": WORKFLOW,
        "client_id": "their-socket",
        "extra_data": {"auth_token_comfy_org": SECRET, "extra_pnginfo": {"note": "x"}},
        "prompt_id": str(uuid.uuid4()),
        "number": 3,
        "front": True,
    }
    request = parse_request(body)

    assert request.workflow == WORKFLOW
    assert request.extra_data == {"auth_token_comfy_org": SECRET, "extra_pnginfo": {"note": "x"}}


@pytest.mark.parametrize(
    ("doc", "phrase"),
    [
        ({"prompt": WORKFLOW, "prompt_id": "not-a-uuid"}, "`prompt_id` must be a UUID in canonical lowercase"),
        ({"prompt": WORKFLOW, "prompt_id": str(uuid.uuid4()).upper()}, "`prompt_id` must be a UUID"),
        ({"prompt": WORKFLOW, "priority": 1}, "unknown field(s) 'priority'"),
        ({"prompt": WORKFLOW, "partial_execution_targets": ["2"]}, "`partial_execution_targets` is not supported"),
        ({"prompt": WORKFLOW, "number": "first"}, "`number` must be a number"),
        ({"prompt": WORKFLOW, "front": "yes"}, "`front` must be true or false"),
        ({"prompt": "graph"}, "`prompt` must be an API-format workflow"),
        ({"prompt": WORKFLOW, "extra_data": ["k"]}, "`extra_data`"),
    ],
)
def test_a_malformed_comfyui_body_is_a_422_naming_the_field(doc: dict[str, Any], phrase: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(doc)
    assert caught.value.status_code == 422
    assert phrase in caught.value.message


# --- neither, and the secret ---------------------------------------------------------------------


def test_a_document_of_no_accepted_shape_names_every_shape_and_keeps_the_export_hint() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request({"graph": WORKFLOW})
    message = caught.value.message
    for shape in ('{"workflow": {...}}', "bare API-format workflow", '{"input": {"workflow"', '{"prompt": {...}}'):
        assert shape in message
    assert "Workflow > Export (API)" in message


def test_our_own_document_takes_extra_data_and_older_shapes_still_parse() -> None:
    assert parse_request({"workflow": WORKFLOW, "extra_data": {"api_key_comfy_org": SECRET}}).extra_data == {
        "api_key_comfy_org": SECRET
    }
    assert parse_request(WORKFLOW).workflow == WORKFLOW  # a bare workflow, as before
    assert parse_request({"workflow": WORKFLOW}).extra_data is None


def test_the_secret_is_in_no_repr_and_no_error_message() -> None:
    request = parse_request({"input": {"workflow": WORKFLOW, "comfy_org_api_key": SECRET}})
    assert SECRET not in repr(request) and SECRET not in str(request)

    refusals = [
        {"input": {"workflow": WORKFLOW, "comfy_org_api_key": SECRET, "extra_data": {"api_key_comfy_org": "other"}}},
        {"workflow": WORKFLOW, "extra_data": {"api_key_comfy_org": SECRET, "bad": "\ud800"}},
        {"workflow": WORKFLOW, "extra_data": SECRET},
    ]
    for doc in refusals:
        with pytest.raises(InvalidRequest) as caught:
            parse_request(doc)
        assert SECRET not in caught.value.message
        assert SECRET not in str(caught.value.to_body())


# --- extra_data reaches ComfyUI ------------------------------------------------------------------


@pytest.mark.comfyui
def test_extra_data_reaches_comfyuis_prompt_and_never_replaces_the_runners_client_id(runner: Runner) -> None:
    request = parse_request(
        {
            "prompt": empty_image_workflow(size=8, prefix="extra-data"),
            "client_id": "the-callers-socket",
            "extra_data": {"client_id": "the-callers-socket", "api_key_comfy_org": SECRET, "marker": "m-1"},
        }
    )

    completed = run_request(request, runner, RunOptions())

    # The run ends at its last output; ComfyUI files the prompt in /history a moment later.
    entry = wait_for(
        lambda: runner.client.history(completed.result.prompt_id), timeout_s=30, what="the prompt in /history"
    )
    extra = entry["prompt"][3]  # (number, prompt_id, prompt, extra_data, outputs): as ComfyUI queued it
    assert extra["marker"] == "m-1"
    assert extra["client_id"] == runner.events.client_id  # ours: our websocket got the run's events
    assert SECRET not in str(entry)  # ComfyUI keeps its sensitive keys out of /history
