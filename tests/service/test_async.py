"""Async requests ride the event pipeline: the request goes to the inbox, the job's outbox writes
(simulated here, named as the job names them) are what GET /status/{id} reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from job.devstack.gcs_emulator import GcsEmulator
from tests.service.conftest import MakeService, Service
from tests.support.comfy import empty_image_workflow

pytestmark = pytest.mark.comfyui

REQUEST = {
    "workflow": empty_image_workflow(size=8, color=0xA5A5A5),
    "output": {"format": "webp", "return": "uri"},
    "webhook": "https://example.com/hook",
    "id": "client-7",
    "async": True,
}


def write_outbox(gcs: GcsEmulator, request_id: str, name: str, doc: dict[str, Any], prefix: str = "") -> None:
    """What the job writes (job/items/outbox.py): status.json while running, result.json last."""
    blob = gcs.client().bucket("outbox").blob(f"{prefix}async/{request_id}/{name}")
    blob.upload_from_string(json.dumps(doc), content_type="application/json")


def test_async_request_is_written_to_the_inbox_and_tracked_to_its_result(service: Service, gcs: GcsEmulator) -> None:
    accepted = service.predict(REQUEST)

    assert accepted.status_code == 202
    body = accepted.json()
    request_id = body["id"]
    assert body["status"] == "queued"
    # Without PUBLIC_URL (or a trusted proxy's X-Forwarded-Host) the link is relative: never from Host.
    assert body["status_url"] == f"/status/{request_id}"
    assert accepted.headers["location"] == body["status_url"]

    # The document in the inbox is the request, ready for the job (minus the async flag).
    stored = json.loads(gcs.client().bucket("inbox").blob(f"async/{request_id}.json").download_as_bytes())
    assert stored["workflow"] == REQUEST["workflow"]
    assert stored["output"] == {"format": "webp", "quality": 95, "return": "uri"}
    assert stored["webhook"] == "https://example.com/hook"
    assert stored["id"] == "client-7"
    assert "async" not in stored

    assert service.http.get(f"/status/{request_id}").json() == {"id": request_id, "status": "queued"}

    progress = {"state": "running", "node": "1", "class_type": "EmptyImage", "value": 0, "max": 0}
    write_outbox(gcs, request_id, "status.json", {"state": "running", "progress": progress, "updated_at": 1.0})
    assert service.http.get(f"/status/{request_id}").json() == {
        "id": request_id,
        "status": "running",
        "state": "running",
        "progress": progress,
    }

    result = {
        "status": "success",
        "prompt_id": "p-1",
        "images": [{"filename": "a.webp", "subfolder": "", "type": "output", "uri": "gs://outbox/async/x/a.webp"}],
        "files": [],
        "outputs": {},
        "timings": {"queue_s": 0.0, "execution_s": 0.1, "total_s": 0.2},
        "source": f"gs://inbox/async/{request_id}.json#1",
    }
    write_outbox(gcs, request_id, "result.json", result)
    done = service.http.get(f"/status/{request_id}")
    assert done.status_code == 200
    assert done.json() == {"id": request_id, "status": "success", "result": result}


def test_prefer_respond_async_header_works_like_the_async_field(service: Service, gcs: GcsEmulator) -> None:
    accepted = service.predict({"workflow": empty_image_workflow(size=8)}, headers={"Prefer": "respond-async"})

    assert accepted.status_code == 202
    assert accepted.headers["preference-applied"] == "respond-async"
    request_id = accepted.json()["id"]
    assert gcs.client().bucket("inbox").blob(f"async/{request_id}.json").exists()


def test_failed_async_request_reports_its_error(service: Service, gcs: GcsEmulator) -> None:
    request_id = service.predict(REQUEST).json()["id"]
    error = {"type": "execution_error", "message": "node 3 (KSampler) failed: RuntimeError: boom"}
    write_outbox(gcs, request_id, "result.json", {"status": "error", "error": error})

    body = service.http.get(f"/status/{request_id}").json()
    assert body["status"] == "error"
    assert body["error"] == error


def test_invalid_async_request_is_refused_before_it_reaches_the_inbox(service: Service) -> None:
    response = service.predict({"workflow": {"nodes": [], "links": []}, "async": True})
    assert response.status_code == 422


def test_unknown_and_malformed_ids(service: Service) -> None:
    unknown = service.http.get("/status/0123456789abcdef0123456789abcdef")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found"

    for tricky in ("..%2F..%2Fsecrets", "a.json", "a%00b", "x" * 200):
        response = service.http.get(f"/status/{tricky}")
        assert response.status_code in (404, 422), tricky
        assert response.json()["status"] == "error"


def test_status_reads_under_the_triggers_outbox_prefix(make_service: MakeService, gcs: GcsEmulator) -> None:
    with make_service(outbox_prefix="results") as service:
        request_id = service.predict(REQUEST).json()["id"]
        write_outbox(gcs, request_id, "result.json", {"status": "success"})  # without the prefix: not ours
        assert service.http.get(f"/status/{request_id}").json()["status"] == "queued"

        write_outbox(gcs, request_id, "result.json", {"status": "success"}, prefix="results/")
        assert service.http.get(f"/status/{request_id}").json()["status"] == "success"
