"""The whole inbox path on one machine: a drop into the inbox, its finalized CloudEvent through the
function as functions-framework serves it, `jobs.run` over REST to the Admin API stand-in, which
starts `worker-comfyui job` as a process with the overridden env; the job boots its own ComfyUI,
fetches a gs:// input while it boots, and writes outputs and result.json to the outbox."""

from __future__ import annotations

import io
import json
from pathlib import Path

import functions_framework
import pytest
from PIL import Image

from job.devstack.run_api import DEFAULT_JOB, ExecutionState, RunApiStandin
from tests.items.conftest import PROJECT, job_env, own_comfyui_env
from tests.support.comfy import invert_workflow, png_bytes
from tests.support.gcs_events import finalized_event, post_event

REPO = Path(__file__).resolve().parents[2]
TRIGGER_VARS = (
    "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "REGION", "JOB_NAME", "OUTBOX_BUCKET", "OUTBOX_PREFIX",
    "CLAIMS_PREFIX", "MAX_REQUEST_BYTES", "CLAIM_LEASE_S", "CLAIM_WAIT_S", "RUN_JOB_TIMEOUT_S",
    "RUN_API_ENDPOINT", "STORAGE_EMULATOR_HOST",
)  # fmt: skip


@pytest.mark.comfyui
@pytest.mark.slow
def test_drop_runs_the_job_once_and_the_outbox_holds_the_decoded_outputs(gcs, inbox, outbox, monkeypatch, tmp_path):
    inbox.blob("assets/photo.png").upload_from_string(png_bytes((40, 30), (10, 200, 90)), content_type="image/png")
    request = {
        "workflow": invert_workflow("photo.png", prefix="pipeline"),
        "inputs": {"photo.png": f"gs://{inbox.name}/assets/photo.png"},
        "id": "drop-1",
    }
    blob = inbox.blob("batch/one.json")
    blob.upload_from_string(json.dumps(request), content_type="application/json")
    source = f"gs://{inbox.name}/batch/one.json#{blob.generation}"
    base_env = job_env(gcs, **own_comfyui_env(tmp_path / "base"))

    with RunApiStandin(launch=True, base_env=base_env, cwd=REPO) as run_api:
        for name in TRIGGER_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        monkeypatch.setenv("RUN_API_ENDPOINT", run_api.url)
        monkeypatch.setenv("FUNCTION_TARGET", "on_inbox_object")  # functions-framework writes these two
        monkeypatch.setenv("FUNCTION_SIGNATURE_TYPE", "cloudevent")
        app = functions_framework.create_app("on_inbox_object", str(REPO / "trigger" / "main.py"), "cloudevent")
        event = finalized_event(inbox.name, "batch/one.json", blob.generation, blob.size)

        response = post_event(app.test_client(), event, mode="binary")

        assert response.status_code == 200
        [run] = run_api.runs
        assert run["job"] == DEFAULT_JOB
        assert run["body"] == {
            "overrides": {
                "containerOverrides": [
                    {
                        "env": [
                            {"name": "REQUEST_URI", "value": source},
                            {"name": "OUTBOX_URI", "value": "gs://outbox/batch/one/"},
                        ]
                    }
                ]
            }
        }
        [execution] = run_api.executions()
        finished = run_api.wait(execution.name, timeout=240)

    assert finished.state is ExecutionState.SUCCEEDED, finished.exit_codes
    result = json.loads(outbox.blob("batch/one/result.json").download_as_bytes())
    assert result["status"] == "success"
    assert result["source"] == source
    assert result["id"] == "drop-1"
    assert result["execution"] == {
        "name": execution.name.rsplit("/", 1)[-1], "task_index": 0, "task_count": 1, "attempt": 0,
    }  # fmt: skip
    [image] = result["images"]
    assert image["uri"] == f"gs://outbox/batch/one/{image['filename']}"
    assert image["filename"].startswith("pipeline_")
    stored = outbox.get_blob(f"batch/one/{image['filename']}")
    assert stored.content_type == "image/png"
    data = stored.download_as_bytes()
    assert len(data) == image["size"]
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (40, 30)
        color = img.convert("RGB").getpixel((5, 5))
    assert isinstance(color, tuple)
    assert all(abs(a - b) <= 2 for a, b in zip(color, (245, 55, 165), strict=True)), "the gs:// input, inverted"
    assert result["timings"]["boot_s"] > 0
    assert result["timings"]["prepare_s"] < result["timings"]["boot_s"], "the input was fetched while ComfyUI booted"
    status = json.loads(outbox.blob("batch/one/status.json").download_as_bytes())
    assert status["state"] == "succeeded"
