"""ComfyUI's own API clients and RunPod's envelope against POST /predict.

The ComfyUI client is written the way ComfyUI's `script_examples/basic_api_example.py` talks: the
graph as `prompt` beside a `client_id`, json.dumps'd and POSTed with urllib, no Content-Type set."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from tests.service.conftest import Service
from tests.support.comfy import empty_image_workflow

pytestmark = pytest.mark.comfyui


def queue_prompt(url: str, prompt: dict[str, Any], **fields: Any) -> tuple[int, dict[str, Any]]:
    """basic_api_example.py's queue_prompt, pointed at /predict; the status and the JSON answer."""
    p = {"prompt": prompt, "client_id": str(uuid.uuid4()), **fields}
    data = json.dumps(p).encode("utf-8")
    req = urllib.request.Request(f"{url}/predict", data=data)
    try:
        with urllib.request.urlopen(req, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_comfyuis_basic_api_example_body_runs_on_predict(service: Service) -> None:
    status, body = queue_prompt(
        service.url,
        empty_image_workflow(size=8, color=0x336699, prefix="comfy-client"),
        extra_data={"extra_pnginfo": {"from": "a ComfyUI client"}},
        front=False,
    )

    assert status == 200
    assert body["status"] == "success"
    (image,) = body["images"]
    assert base64.b64decode(image["image"]).startswith(b"\x89PNG")
    assert "extra_data" not in json.dumps(body)


def test_comfyuis_body_with_an_invalid_prompt_id_is_a_clear_422(service: Service) -> None:
    status, body = queue_prompt(service.url, empty_image_workflow(size=8), prompt_id="42")

    assert status == 422
    assert body["error"]["type"] == "invalid_request"
    assert "`prompt_id` must be a UUID in canonical lowercase hyphenated form" in body["error"]["message"]


def test_runpods_envelope_runs_on_predict(service: Service) -> None:
    envelope = {"input": {"workflow": empty_image_workflow(size=8, prefix="rp-predict"), "id": "rp-7"}}

    answer = service.predict(envelope)

    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "success" and body["id"] == "rp-7"
    assert base64.b64decode(body["images"][0]["image"]).startswith(b"\x89PNG")


def test_a_body_of_no_accepted_shape_says_which_shapes_are(service: Service) -> None:
    answer = service.predict({"graph": empty_image_workflow(size=8)})

    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert "RunPod's" in message and "ComfyUI's" in message and "Export (API)" in message
