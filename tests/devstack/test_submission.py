"""What `worker-comfyui submit` sends and how it reads the answer, without a stack running."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from job.client.submission import Submitted, build_request, error_from_result, object_name
from job.commands.console import print_error
from job.errors import InvalidInput, UIFormatWorkflow, WorkerError, WorkflowInvalid
from tests.support.comfy import invert_workflow, png_bytes
from trigger.config import TriggerConfig
from trigger.objects import StorageObject


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_bare_workflow_is_wrapped_with_the_images_inline(tmp_path):
    image = png_bytes()

    doc = build_request(_write(tmp_path / "wf.json", invert_workflow()), {"input.png": image})

    assert doc["workflow"] == invert_workflow()
    assert doc["images"] == [{"name": "input.png", "image": base64.b64encode(image).decode()}]


def test_a_request_document_keeps_its_fields_and_an_image_flag_replaces_its_namesake(tmp_path):
    old, new = png_bytes(color=(1, 2, 3)), png_bytes(color=(4, 5, 6))
    request = {
        "workflow": invert_workflow(),
        "images": [{"name": "input.png", "image": base64.b64encode(old).decode()}],
        "output": {"format": "webp"},
        "id": "mine",
    }

    doc = build_request(_write(tmp_path / "req.json", request), {"input.png": new})

    assert (doc["output"], doc["id"]) == ({"format": "webp"}, "mine")
    assert [base64.b64decode(entry["image"]) for entry in doc["images"]] == [new]


def test_runpod_and_comfyui_bodies_are_sent_as_this_workers_document(tmp_path):
    image = png_bytes()
    runpod = {"input": {"workflow": invert_workflow(), "comfy_org_api_key": "k-1"}}
    comfyui = {"prompt": invert_workflow(), "client_id": "theirs"}

    for name, body in (("runpod.json", runpod), ("comfyui.json", comfyui)):
        doc = build_request(_write(tmp_path / name, body), {"input.png": image})

        assert doc["workflow"] == invert_workflow(), name
        assert doc["images"] == [{"name": "input.png", "image": base64.b64encode(image).decode()}], name
        assert "input" not in doc and "prompt" not in doc, name
    assert build_request(_write(tmp_path / "runpod.json", runpod), {})["extra_data"] == {"api_key_comfy_org": "k-1"}


def test_ui_format_is_refused_before_upload_with_the_export_hint(tmp_path):
    ui = {"nodes": [], "links": [], "last_node_id": 3}

    with pytest.raises(UIFormatWorkflow, match=r"Export \(API\)"):
        build_request(_write(tmp_path / "ui.json", ui), {})


def test_an_image_flag_that_is_not_an_image_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match=r"'notes\.png' is not an image"):
        build_request(_write(tmp_path / "wf.json", invert_workflow()), {"notes.png": b"hello"})


def test_object_names_are_fresh_in_a_folder_and_exact_when_given(tmp_path):
    workflow = tmp_path / "invert_input.json"

    first, second = object_name("batch", workflow), object_name("batch/", workflow)

    assert first.startswith("batch/invert_input-") and first.endswith(".json")
    assert first != second
    assert object_name("batch/exact.json", workflow) == "batch/exact.json"


@pytest.mark.parametrize("prefix", ["", "results/"])
def test_outbox_folder_is_where_the_trigger_sends_the_job(prefix):
    name = "some/path/name.json"
    config = TriggerConfig(outbox_bucket="outbox", outbox_prefix=prefix)
    trigger_says = StorageObject("inbox", name, 7).outbox_uri(config.layout)

    submitted = Submitted("inbox", name, 7, "outbox", config.layout.outbox_path(name))

    assert submitted.outbox_uri == trigger_says
    assert submitted.inbox_uri == "gs://inbox/some/path/name.json#7"


def test_a_failed_result_becomes_the_error_its_type_names_and_prints_node_by_node(capsys):
    result = {
        "status": "error",
        "error": {
            "type": "workflow_invalid",
            "message": "Prompt outputs failed validation",
            "node_errors": {
                "1": {"class_type": "LoadImage", "errors": [{"message": "Invalid image file: gone.png"}]},
            },
        },
    }

    error = error_from_result(result)
    print_error(error)

    assert type(error) is WorkflowInvalid
    printed = capsys.readouterr().err
    assert "error (workflow_invalid): Prompt outputs failed validation" in printed
    assert "node 1 (LoadImage): Invalid image file: gone.png" in printed


def test_an_error_type_this_version_does_not_know_keeps_its_name():
    error = error_from_result({"status": "error", "error": {"type": "brand_new", "message": "m", "hint": "h"}})

    assert isinstance(error, WorkerError)
    assert (error.error_type, error.message, error.details) == ("brand_new", "m", {"hint": "h"})


def test_submit_without_a_running_stack_says_how_to_start_one(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "job", "submit", str(_write(tmp_path / "wf.json", invert_workflow()))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "no dev stack is running" in done.stderr
    assert "worker-comfyui dev" in done.stderr
