"""Inputs by reference and outputs by URI, through POST /predict, against the GCS emulator."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from job.devstack.gcs_emulator import GcsEmulator
from tests.service.conftest import MakeService, Service
from tests.support.comfy import empty_image_workflow, invert_workflow, png_bytes
from tests.support.files_server import FilesServer, Redirect

pytestmark = pytest.mark.comfyui


def _pixel(encoded: str) -> tuple[int, ...]:
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
        pixel = img.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel


def test_gs_input_is_fetched_and_used_by_load_image(service: Service, gcs: GcsEmulator) -> None:
    gcs.client().bucket("inputs").blob("svc/photo.png").upload_from_string(png_bytes((8, 8), (0, 0, 0)))

    response = service.predict(
        {"workflow": invert_workflow("svc-gs.png"), "inputs": {"svc-gs.png": "gs://inputs/svc/photo.png"}}
    )

    assert response.status_code == 200, response.text
    assert _pixel(response.json()["images"][0]["image"]) == (255, 255, 255)


def test_missing_gs_input_is_a_404_in_the_contract_shape(service: Service) -> None:
    response = service.predict(
        {"workflow": invert_workflow("svc-gone.png"), "inputs": {"svc-gone.png": "gs://inputs/svc/nothing.png"}}
    )

    assert response.status_code == 404
    body = response.json()
    error_id = body["error"].pop("id")  # every error carries its id (the log lines about it carry it too)
    assert len(error_id) == 12 and int(error_id, 16) >= 0
    assert body == {
        "status": "error",
        "error": {"type": "not_found", "message": "gs://inputs/svc/nothing.png does not exist"},
    }


def test_url_input_is_fetched_through_redirects_when_private_urls_are_allowed(make_service: MakeService) -> None:
    routes = {"/photo.png": png_bytes((8, 8), (255, 255, 255)), "/latest": Redirect("/photo.png")}
    with FilesServer(routes) as files, make_service(allow_private_input_urls=True) as service:  # type: ignore[arg-type]
        response = service.predict(
            {"workflow": invert_workflow("svc-url.png"), "inputs": {"svc-url.png": files.url("/latest")}}
        )

    assert response.status_code == 200, response.text
    assert _pixel(response.json()["images"][0]["image"]) == (0, 0, 0)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "169.254.169.254",
        "metadata.google.internal",
        "[::1]:{port}",
        "[fd00::1]",
    ],
)
def test_url_inputs_that_reach_inside_are_refused(service: Service, host: str) -> None:
    with FilesServer({"/photo.png": png_bytes()}) as files:
        url = f"https://{host.format(port=files.port)}/photo.png"
        response = service.predict({"workflow": invert_workflow("svc-ssrf.png"), "inputs": {"svc-ssrf.png": url}})
        assert files.requests == []

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_input"
    assert "only fetched from public hosts" in error["message"]


def test_plain_http_input_is_refused_by_default(service: Service) -> None:
    response = service.predict(
        {"workflow": invert_workflow("svc-http.png"), "inputs": {"svc-http.png": "http://example.com/a.png"}}
    )
    assert response.status_code == 400
    assert "plain http:// is refused" in response.json()["error"]["message"]


def test_uri_return_uploads_outputs_to_the_outbox(service: Service, gcs: GcsEmulator) -> None:
    workflow = empty_image_workflow(size=16, batch=2, color=0x102030, prefix="svc-uri")
    response = service.predict({"workflow": workflow, "output": {"format": "webp", "return": "uri"}})

    assert response.status_code == 200, response.text
    body = response.json()
    prompt_id = body["prompt_id"]
    assert len(body["images"]) == 2
    bucket = gcs.client().bucket("outbox")
    for image in body["images"]:
        assert "image" not in image
        assert image["uri"] == f"gs://outbox/predict/{prompt_id}/{image['filename']}"
        blob = bucket.get_blob(f"predict/{prompt_id}/{image['filename']}")
        assert blob is not None
        assert blob.content_type == "image/webp"
        with Image.open(io.BytesIO(blob.download_as_bytes())) as img:
            assert img.format == "WEBP"
            assert img.size == (16, 16)
