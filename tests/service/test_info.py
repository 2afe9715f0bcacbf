"""GET /, GET /models, the OpenAPI schema and docs, and what the service logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from job.logs import JsonFormatter
from tests.service.conftest import Service, b64
from tests.support.comfy import expected_comfyui_version, invert_workflow, png_bytes

pytestmark = pytest.mark.comfyui


def test_root_describes_the_service(service: Service) -> None:
    info = service.http.get("/").json()
    assert info == {
        "service": "worker-comfyui",
        "version": info["version"],
        "comfyui_version": expected_comfyui_version(service.settings),
        "model_type": "base",
        "ready": True,
        "detail": None,
        "comfyui": "ready",
        "warmup": "none",
        "queued": 0,
        "max_queue_depth": service.settings.max_queue_depth,
    }
    assert info["version"]


def test_models_lists_every_loader_folder(service: Service, comfy_base: Path) -> None:
    for folder, name in (("loras", "svc-style.safetensors"), ("upscale_models", "svc-4x.pth")):
        (comfy_base / "models" / folder).mkdir(parents=True, exist_ok=True)
        (comfy_base / "models" / folder / name).write_bytes(b"not a real model")

    body = service.http.get("/models").json()

    models = body["models"]
    for folder in ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "upscale_models", "controlnet"):
        assert folder in models
    assert "svc-style.safetensors" in models["loras"]
    assert "svc-4x.pth" in models["upscale_models"]
    assert {"clip_vision", "style_models", "gligen", "hypernetworks"} <= set(models)  # the other loaders too
    assert body["loaders"]["CheckpointLoaderSimple"] == {"ckpt_name": "checkpoints"}
    assert body["loaders"]["DualCLIPLoader"] == {"clip_name1": "text_encoders", "clip_name2": "text_encoders"}
    assert body["loaders"]["UNETLoader"] == {"unet_name": "diffusion_models"}


def test_openapi_schema_documents_the_request_and_responses(service: Service) -> None:
    schema = service.http.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert {"WorkflowRequest", "PredictResponse", "ErrorResponse", "AsyncAccepted", "AsyncStatus"} <= set(components)
    predict = schema["paths"]["/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WorkflowRequest"
    }
    assert {"200", "202", "400", "413", "429", "504"} <= set(predict["responses"])
    assert set(components["WorkflowRequest"]["properties"]) >= {"workflow", "images", "inputs", "output", "async"}
    assert "swagger-ui" in service.http.get("/docs").text


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_logs_are_json_with_prompt_and_timings_and_no_base64(service: Service, json_log: io.StringIO) -> None:
    image = b64(png_bytes((64, 64), (1, 2, 3)))
    response = service.predict(
        {"workflow": invert_workflow("svc-log.png"), "images": [{"name": "svc-log.png", "image": image}], "id": "log-1"}
    )
    assert response.status_code == 200
    output = response.json()["images"][0]["image"]

    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"severity", "message"} <= set(line) for line in lines)
    [done] = [line for line in lines if line["message"].startswith("predict done")]
    assert done["severity"] == "INFO"
    assert done["prompt_id"] == response.json()["prompt_id"]
    assert done["request_id"] == "log-1"
    assert set(done["timings"]) == {"queue_s", "execution_s", "total_s"}
    assert any(line.get("request_id") == "log-1" and "queued prompt" in line["message"] for line in lines)
    assert image[:40] not in text
    assert output[:40] not in text
