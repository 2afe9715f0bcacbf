"""A good request: outputs uploaded whole with their content types, result.json last with gs:// URIs,
a rerun of the finished item skipped, and the webhook signed so a Standard Webhooks library accepts it.
The jobs attach to the session ComfyUI."""

from __future__ import annotations

import base64
import io
import json
import secrets
from typing import Any

import pytest
from PIL import Image
from standardwebhooks import Webhook

from tests.items.conftest import job_env
from tests.support.comfy import empty_image_workflow, png_bytes
from tests.support.webhook_receiver import WebhookReceiver

RED = (200, 30, 30)
BLUE = (10, 40, 250)


def two_inputs_workflow() -> dict[str, Any]:
    """An inline input and a gs:// one, each inverted and saved under its own prefix."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "inline.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "job/inline"}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "ref.png"}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "ref"}},
    }


def inverted(color: tuple[int, int, int]) -> tuple[int, int, int]:
    return (255 - color[0], 255 - color[1], 255 - color[2])


def pixel(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as img:
        value = img.convert("RGB").getpixel((0, 0))
    assert isinstance(value, tuple)
    return value


@pytest.mark.comfyui
@pytest.mark.slow
def test_outputs_and_result_land_in_the_outbox_and_a_rerun_is_skipped(gcs, drop, inbox, run_job, attached):
    inbox.blob("assets/blue.png").upload_from_string(png_bytes(color=BLUE), content_type="image/png")
    request = {
        "workflow": two_inputs_workflow(),
        "images": [{"name": "inline.png", "image": base64.b64encode(png_bytes(color=RED)).decode()}],
        "inputs": {"ref.png": f"gs://{inbox.name}/assets/blue.png"},
        "id": "order-7",
    }
    item = drop(request)
    env = job_env(gcs, request_uri=item.request_uri, outbox_uri=item.outbox_uri, cloud_run_execution="ex-9", **attached)

    code, log = run_job(env)

    assert code == 0, log
    result = item.result()
    assert result["status"] == "success"
    assert result["source"] == item.request_uri
    assert result["id"] == "order-7"
    assert result["files"] == []
    assert set(result["outputs"]) == {"3", "6"}
    by_node = {entry["node_id"]: entry for entry in result["images"]}
    assert set(by_node) == {"3", "6"}
    expected = {"3": inverted(RED), "6": inverted(BLUE)}
    for node_id, entry in by_node.items():
        relpath = f"{entry['subfolder']}/{entry['filename']}" if entry["subfolder"] else entry["filename"]
        assert entry["uri"] == f"{item.outbox_uri}{relpath}"
        assert entry["content_type"] == "image/png"
        assert entry["type"] == "output"
        assert "image" not in entry, "result.json carries URIs, not base64"
        data = item.read(entry["uri"])
        assert len(data) == entry["size"]
        assert all(abs(a - b) <= 2 for a, b in zip(pixel(data), expected[node_id], strict=True)), "inverted input"
        assert item.outbox_object(relpath).content_type == "image/png"
    assert by_node["3"]["subfolder"] == "job", "ComfyUI's subfolder is kept in the outbox"
    timings = result["timings"]
    assert set(timings) >= {"queue_s", "execution_s", "total_s", "prepare_s", "boot_s", "upload_s", "job_s"}
    assert 0 < timings["total_s"] <= timings["job_s"]
    assert result["execution"] == {"name": "ex-9", "task_index": 0, "task_count": 1, "attempt": 0}
    assert result["finished_at"].endswith("Z")
    listed = sorted(f"{e['subfolder']}/{e['filename']}".lstrip("/") for e in result["images"])
    assert item.outbox_names() == sorted([*listed, "result.json", "status.json"])
    status = item.status()
    assert status["state"] == "succeeded"
    assert status["source"] == item.request_uri
    result_generation = item.outbox_object("result.json").generation

    code, log = run_job(env)

    assert code == 0, log
    assert "exists already" in log
    assert item.outbox_object("result.json").generation == result_generation, "a finished item is not redone"
    assert item.outbox_names() == sorted([*listed, "result.json", "status.json"])


@pytest.mark.comfyui
@pytest.mark.slow
def test_webhook_gets_the_signed_result_after_a_refused_first_try(gcs, drop, run_job, attached):
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with WebhookReceiver(statuses=[503, 204]) as hook:
        item = drop({"workflow": {"1": {"class_type": "EmptyImage", "inputs": {
            "width": 8, "height": 8, "batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", "inputs": {
            "images": ["1", 0], "filename_prefix": "hooked"}}}, "webhook": hook.url})  # fmt: skip
        env = job_env(
            gcs, request_uri=item.request_uri, outbox_uri=item.outbox_uri, webhook_secret=secret,
            allow_private_urls="true", **attached,
        )  # fmt: skip

        code, log = run_job(env)

    assert code == 0, log
    assert len(hook.received) == 2
    first, second = hook.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"], "one id for every try of one message"
    payload = Webhook(secret).verify(second.body, second.headers)
    result = item.result()
    assert result["webhook"] == {"url": hook.url, "status": "delivered", "attempts": 2, "http_status": 204}
    assert payload == {key: value for key, value in result.items() if key != "webhook"}
    assert payload["status"] == "success"
    assert payload["images"][0]["uri"].startswith(item.outbox_uri)
    assert json.loads(second.body) == payload


@pytest.mark.comfyui
def test_local_run_reads_a_file_and_writes_an_outbox_folder(gcs, run_job, attached, tmp_path):
    request = tmp_path / "wf.json"
    request.write_text(
        json.dumps({"workflow": empty_image_workflow(size=16, prefix="local"), "webhook": "https://example.com/h"})
    )

    code, log = run_job(job_env(gcs, **attached), str(request), "--outbox", str(tmp_path / "out"))

    assert code == 0, log
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["status"] == "success"
    assert result["source"] == str(request)
    [image] = result["images"]
    assert image["uri"] == f"{tmp_path}/out/{image['filename']}"
    assert pixel((tmp_path / "out" / image["filename"]).read_bytes()) == (255, 128, 0)
    assert result["webhook"]["status"] == "not_sent", "no WEBHOOK_SECRET: refused, and recorded"
    assert "set WEBHOOK_SECRET=whsec_" in result["webhook"]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [image["filename"], "result.json", "status.json"]
    )
