"""A file input's URL value through POST /predict: fetched with the service's own fetcher, or refused
naming the node and input (the runner's side: tests/engine/test_url_file_values.py)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from tests.service.conftest import MakeService, Service
from tests.support.comfy import invert_workflow, png_bytes
from tests.support.files_server import FilesServer

pytestmark = pytest.mark.comfyui

BLACK = png_bytes((8, 8), (0, 0, 0))


def _pixel(encoded: str) -> tuple[int, ...]:
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
        pixel = img.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel


def test_predict_fetches_a_url_value(make_service: MakeService) -> None:
    with FilesServer({"/photo.png": BLACK}) as files, make_service(allow_private_urls=True) as service:
        response = service.predict({"workflow": invert_workflow(files.url("/photo.png"), prefix="svc_url_value")})

    assert response.status_code == 200, response.text
    assert _pixel(response.json()["images"][0]["image"]) == (255, 255, 255)


def test_predict_refuses_a_private_url_value_naming_the_node(service: Service) -> None:
    with FilesServer({"/photo.png": BLACK}) as files:
        url = files.url("/photo.png").replace("http://", "https://")
        response = service.predict({"workflow": invert_workflow(url)})
        assert files.requests == []

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_input"
    assert error["message"].startswith("node 1 (LoadImage) input 'image': ")
    assert "only fetched from public hosts" in error["message"]
