"""A request the caller got wrong is a finished item: an error result.json, and exit 0 so Cloud Run
does not retry it. Each job attaches to the session ComfyUI, so no case pays for a boot."""

from __future__ import annotations

import json

import pytest

from tests.items.conftest import job_env
from tests.support.comfy import empty_image_workflow

UI_FORMAT = {"last_node_id": 2, "last_link_id": 1, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": []}
UNKNOWN_NODE = {
    "1": {"class_type": "NoSuchNodeAnywhere", "inputs": {}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}


@pytest.mark.comfyui
@pytest.mark.parametrize(
    ("body", "error_type", "says"),
    [
        (b'{"workflow": {"1": ', "invalid_json", "not valid JSON"),
        (json.dumps(UI_FORMAT).encode(), "ui_format_workflow", "Export (API)"),
        (json.dumps({"workflow": UNKNOWN_NODE, "id": "mine"}).encode(), "unknown_node", "NoSuchNodeAnywhere"),
        (
            json.dumps({"workflow": empty_image_workflow(), "inputs": {"a.png": "gs://outbox/no/such.png"}}).encode(),
            "not_found",
            "gs://outbox/no/such.png",
        ),
    ],
    ids=["invalid-json", "ui-format", "unknown-node", "missing-gs-input"],
)
@pytest.mark.slow
def test_caller_mistake_writes_error_result_and_exits_zero(gcs, drop, run_job, attached, body, error_type, says):
    item = drop(body)

    code, log = run_job(
        job_env(gcs, request_uri=item.request_uri, outbox_uri=item.outbox_uri, cloud_run_execution="ex-1", **attached)
    )

    assert code == 0, log
    result = item.result()
    assert result is not None
    assert result["status"] == "error"
    assert result["error"]["type"] == error_type
    assert says in result["error"]["message"]
    assert result["source"] == item.request_uri
    assert result["execution"] == {"name": "ex-1", "task_index": 0, "task_count": 1, "attempt": 0}
    assert result["timings"]["job_s"] > 0
    assert "images" not in result
    assert item.status()["state"] == "failed"
    assert item.outbox_names() == ["result.json", "status.json"]
    if error_type == "unknown_node":
        assert result["id"] == "mine"
        assert "1" in result["error"]["node_errors"]


@pytest.mark.comfyui
def test_generation_overwritten_before_the_job_read_it_is_recorded_and_finished(gcs, drop, run_job, attached):
    first = drop({"workflow": empty_image_workflow()}, name="requests/overwritten.json")
    second = drop({"workflow": empty_image_workflow(size=8)}, name="requests/overwritten.json")

    code, log = run_job(job_env(gcs, request_uri=first.request_uri, outbox_uri=first.outbox_uri, **attached))

    assert code == 0, log
    result = first.result()
    assert result["status"] == "error"
    assert result["error"]["type"] == "not_found"
    assert (
        f"generation {first.generation} of gs://{first.bucket.name}/requests/overwritten.json is gone"
        in (result["error"]["message"])
    )
    assert f"generation {second.generation} is the current one" in result["error"]["message"]


def test_job_without_request_uri_exits_2_saying_what_to_set(gcs, run_job):
    code, log = run_job(job_env(gcs))

    assert code == 2, log
    assert "REQUEST_URI is not set" in log
