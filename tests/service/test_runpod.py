"""RunPod's own client (`runpod.Endpoint`) against the RunPod-compatible routes, on the session's real
ComfyUI and a real fake-gcs-server. For `run()`, the job's part is `run_item` on the request's inbox
object, as the trigger would start it (in this process, on the shared runner: a stand-in for the
Cloud Run job, which runs the same function)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import runpod

from job.engine.runner import Runner
from job.items.work_item import Disposition, ItemOutcome, run_item
from job.storage import Storages
from tests.service.conftest import MakeService, Service
from tests.support.comfy import empty_image_workflow, slow_workflow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.comfyui

TOKEN = "runpod-test-token"
ENDPOINT = "my-endpoint"


@pytest.fixture
def endpoint(make_service: MakeService, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[runpod.Endpoint, Service]]:
    """RunPod's client pointed at the service: RUNPOD_ENDPOINT_BASE_URL is read into
    `runpod.endpoint_url_base` at import, so the test sets that; the API key is our API_TOKEN."""
    with make_service(api_token=TOKEN) as service:
        monkeypatch.setattr(runpod, "endpoint_url_base", service.url)
        monkeypatch.setattr(runpod, "api_key", TOKEN)
        yield runpod.Endpoint(ENDPOINT), service


def run_job(service: Service, storages: Storages, runner: Runner, job_id: str) -> ItemOutcome:
    """What the trigger starts for gs://INBOX/async/<id>.json: the job's item, at that generation."""
    uri = f"gs://{service.settings.inbox_bucket}/async/{job_id}.json"
    generation = storages.generation(uri)
    assert generation is not None, "run() wrote no inbox object"
    return run_item(service.settings, f"{uri}#{generation}", storages=storages, runner=runner)


def test_run_sync_returns_our_body_with_runpods_image_fields(endpoint: tuple[runpod.Endpoint, Service]) -> None:
    client, _ = endpoint

    output = client.run_sync({"workflow": empty_image_workflow(size=8, color=0x00FF00), "id": "rp-1"}, timeout=120)

    assert output["status"] == "success" and output["id"] == "rp-1"
    (image,) = output["images"]
    assert image["type"] == "base64"  # RunPod's worker-comfyui: "base64" | "s3_url" (ours: "uri")
    assert image["filename"].endswith(".png") and image["node_id"] == "2"
    assert base64.b64decode(image["data"]).startswith(b"\x89PNG")
    assert "image" not in image  # the bytes once, under RunPod's name
    assert set(output["timings"]) >= {"queue_s", "execution_s", "total_s"}


def test_runsync_answers_runpods_job_document(endpoint: tuple[runpod.Endpoint, Service]) -> None:
    _, service = endpoint
    body = {"input": {"workflow": empty_image_workflow(size=8)}, "policy": {"executionTimeout": 60_000}}

    answer = service.http.post(f"/{ENDPOINT}/runsync", json=body, headers={"Authorization": f"Bearer {TOKEN}"})

    assert answer.status_code == 200
    job = answer.json()
    assert job["status"] == "COMPLETED" and job["id"].startswith("sync-")
    assert isinstance(job["delayTime"], int) and isinstance(job["executionTime"], int)
    assert job["output"]["images"][0]["type"] == "base64"


def test_a_job_that_fails_is_failed_with_our_error(endpoint: tuple[runpod.Endpoint, Service]) -> None:
    client, service = endpoint
    workflow = {**empty_image_workflow(size=8), "9": {"class_type": "NoSuchNode", "inputs": {}}}

    output = client.run_sync({"workflow": workflow}, timeout=120)  # RunPod's client hands back `output`

    assert output["status"] == "error" and output["error"]["type"] == "unknown_node"
    job = service.http.post(
        f"/{ENDPOINT}/runsync", json={"input": {"workflow": workflow}}, headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert job["status"] == "FAILED"
    assert "NoSuchNode" in job["error"]


def test_a_body_that_is_no_job_is_our_4xx(endpoint: tuple[runpod.Endpoint, Service]) -> None:
    client, service = endpoint
    headers = {"Authorization": f"Bearer {TOKEN}"}

    with pytest.raises(requests.HTTPError) as caught:
        client.run_sync({"input": {"images": []}})
    assert caught.value.response.status_code == 422
    assert "has no `workflow` field" in caught.value.response.json()["error"]["message"]

    ours = service.http.post(f"/{ENDPOINT}/runsync", json={"workflow": empty_image_workflow(size=8)}, headers=headers)
    assert ours.status_code == 422
    assert "for this worker's own document use POST /predict" in ours.json()["error"]["message"]


def test_the_api_key_is_our_api_token(endpoint: tuple[runpod.Endpoint, Service]) -> None:
    _, service = endpoint
    with pytest.raises(RuntimeError, match="401 Unauthorized"):
        runpod.Endpoint(ENDPOINT, api_key="wrong").run_sync({"workflow": empty_image_workflow(size=8)})
    assert service.http.get(f"/{ENDPOINT}/health").status_code == 401


def test_run_then_status_and_output_once_the_job_ran_it(
    endpoint: tuple[runpod.Endpoint, Service], storages: Storages, runner: Runner
) -> None:
    client, service = endpoint
    job = client.run({"workflow": empty_image_workflow(size=8, color=0x123456), "comfy_org_api_key": "k-secret"})

    assert job.status() == "IN_QUEUE"
    stored = json.loads(storages.read(f"gs://inbox/async/{job.job_id}.json"))
    assert stored["extra_data"] == {"api_key_comfy_org": "k-secret"}  # the job needs it to run the request

    outcome = run_job(service, storages, runner, job.job_id)

    assert outcome.disposition is Disposition.SUCCEEDED
    assert "k-secret" not in json.dumps(outcome.result)  # nor in result.json
    assert job.status() == "COMPLETED"
    output = job.output()
    (image,) = output["images"]
    assert image["type"] == "uri" and image["data"].startswith("gs://outbox/async/")
    assert storages.read(image["data"]).startswith(b"\x89PNG")
    document = service.http.get(f"/{ENDPOINT}/status/{job.job_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert document.json()["executionTime"] >= 0 and document.json()["delayTime"] >= 0


def test_a_cancelled_queued_job_never_runs_and_reads_cancelled(
    endpoint: tuple[runpod.Endpoint, Service], storages: Storages, runner: Runner
) -> None:
    client, service = endpoint
    job = client.run({"workflow": empty_image_workflow(size=8, prefix="never-run")})

    cancelled = job.cancel()

    assert cancelled == {"id": job.job_id, "status": "CANCELLED"}
    outcome = run_job(service, storages, runner, job.job_id)  # the job starts it anyway, as the trigger would
    assert outcome.disposition is Disposition.FAILED
    assert outcome.result is not None and outcome.result["error"]["type"] == "cancelled"
    assert "before it started" in outcome.result["error"]["message"]
    assert "prompt_id" not in outcome.result  # nothing was queued in ComfyUI
    assert job.status() == "CANCELLED"
    assert client.rp_client.get(f"{ENDPOINT}/status/{job.job_id}")["error"].startswith("the request was cancelled")


@pytest.mark.slow
def test_cancel_stops_a_running_job(
    endpoint: tuple[runpod.Endpoint, Service], storages: Storages, runner: Runner
) -> None:
    client, service = endpoint
    job = client.run({"workflow": slow_workflow(blurs=60, prefix="rp-cancelled")})
    settings = service.settings.model_copy(update={"cancel_poll_s": 0.1})
    uri = f"gs://{settings.inbox_bucket}/async/{job.job_id}.json"
    outcomes: list[ItemOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.append(
            run_item(settings, f"{uri}#{storages.generation(uri)}", storages=storages, runner=runner)
        ),
        daemon=True,
    )
    worker.start()
    status_json = f"gs://{settings.outbox_bucket}/async/{job.job_id}/status.json"

    def executing() -> bool:  # status.json's own state: the prompt is in ComfyUI, not just being prepared
        return (
            storages.generation(status_json) is not None
            and json.loads(storages.read(status_json))["state"] == "running"
        )

    wait_for(executing, timeout_s=120, what="the job's prompt to be running")
    assert job.status() == "IN_PROGRESS"

    assert job.cancel()["status"] == "CANCELLED"
    worker.join(timeout=240)

    assert not worker.is_alive(), "the cancelled job never ended"
    (outcome,) = outcomes
    assert outcome.result is not None and outcome.result["error"]["type"] == "cancelled"
    assert "while it ran" in outcome.result["error"]["message"]
    assert job.status() == "CANCELLED"
    assert "images" not in outcome.result  # no outputs kept


def test_status_of_an_unknown_job_is_404_and_health_counts_this_instance(
    endpoint: tuple[runpod.Endpoint, Service],
) -> None:
    client, _ = endpoint
    with pytest.raises(requests.HTTPError) as caught:
        client.rp_client.get(f"{ENDPOINT}/status/no-such-job")
    assert caught.value.response.status_code == 404

    health: dict[str, Any] = client.health()
    assert health["jobs"] == {"inQueue": 0, "inProgress": 0}
    assert health["workers"] == {"idle": 1, "running": 0}


def test_runpod_endpoint_id_when_set_is_the_only_one_served(make_service: MakeService) -> None:
    with make_service(runpod_endpoint_id="only-this") as service:
        other = service.http.get("/another/health")
        assert other.status_code == 404 and "RUNPOD_ENDPOINT_ID" in other.json()["error"]["message"]
        assert service.http.get("/only-this/health").status_code == 200
