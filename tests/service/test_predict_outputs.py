"""POST /predict on a real ComfyUI over real HTTP: the seed's shape, inputs, animations, formats."""

from __future__ import annotations

import base64
import io
import uuid

import pytest
from PIL import Image

from tests.service.conftest import Service, b64
from tests.support.comfy import empty_image_workflow, invert_workflow, png_bytes

pytestmark = pytest.mark.comfyui


def _image(encoded: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(encoded)))
    img.load()
    return img


def _close(pixel: object, expected: tuple[int, int, int], tolerance: int) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def test_response_keeps_the_seed_shape_field_by_field(service: Service) -> None:
    response = service.predict({"workflow": empty_image_workflow(size=48, color=0x2040C0, prefix="shape")})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"status", "prompt_id", "images", "files", "outputs", "timings"}
    assert body["status"] == "success"
    assert uuid.UUID(body["prompt_id"])
    assert body["files"] == []

    [image] = body["images"]
    assert image["filename"].startswith("shape_") and image["filename"].endswith(".png")
    assert image["subfolder"] == ""
    assert image["type"] == "output"
    assert image["node_id"] == "2"
    assert image["content_type"] == "image/png"
    picture = _image(image["image"])
    assert picture.format == "PNG"
    assert picture.size == (48, 48)
    assert picture.convert("RGB").getpixel((0, 0)) == (0x20, 0x40, 0xC0)
    assert image["size"] == len(base64.b64decode(image["image"]))

    # `outputs` is ComfyUI's own history entry, untouched: the seed's clients read it.
    assert body["outputs"] == {"2": {"images": [{"filename": image["filename"], "subfolder": "", "type": "output"}]}}
    timings = body["timings"]
    assert set(timings) == {"queue_s", "execution_s", "total_s"}
    assert all(isinstance(value, float) and value >= 0 for value in timings.values())
    assert timings["total_s"] >= timings["execution_s"]


def test_bare_workflow_and_client_id_are_accepted(service: Service) -> None:
    bare = service.predict(empty_image_workflow(size=8, color=0x010203, prefix="bare"))
    assert bare.status_code == 200
    assert bare.json()["status"] == "success"

    tagged = service.predict({"workflow": empty_image_workflow(size=8, color=0x010204), "id": "my-request-7"})
    assert tagged.json()["id"] == "my-request-7"


def test_inline_input_image_is_used_by_load_image(service: Service) -> None:
    body = {
        "workflow": invert_workflow("svc-inline.png", prefix="svc-inverted"),
        "images": [{"name": "svc-inline.png", "image": b64(png_bytes((20, 10), (200, 30, 30)))}],
    }
    response = service.predict(body)

    assert response.status_code == 200, response.text
    [image] = response.json()["images"]
    inverted = _image(image["image"]).convert("RGB")
    assert inverted.size == (20, 10)
    assert _close(inverted.getpixel((5, 5)), (55, 225, 225), 1)  # 255 - (200, 30, 30), rounded by float math


def test_data_uri_input_is_accepted(service: Service) -> None:
    data_uri = "data:image/png;base64," + b64(png_bytes((4, 4), (0, 0, 0)))
    response = service.predict(
        {"workflow": invert_workflow("svc-data-uri.png"), "images": [{"name": "svc-data-uri.png", "image": data_uri}]}
    )
    assert response.status_code == 200, response.text
    assert _close(_image(response.json()["images"][0]["image"]).convert("RGB").getpixel((0, 0)), (255, 255, 255), 1)


def test_animated_output_goes_to_files(service: Service) -> None:
    # Three different frames (identical ones would be merged by the encoder).
    def frame(color: int) -> dict[str, object]:
        return {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color}}

    workflow = {
        "1": frame(0xFF0000), "2": frame(0x00FF00), "3": frame(0x0000FF),
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "5": {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["3", 0]}},
        "6": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["5", 0], "filename_prefix": "svc-anim", "fps": 4.0,
                "lossless": True, "quality": 80, "method": "default",
            },
        },
    }  # fmt: skip
    response = service.predict({"workflow": workflow})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["images"] == []
    [item] = body["files"]
    assert item["node_id"] == "6"
    assert item["content_type"] == "image/webp"
    assert item["filename"].endswith(".webp")
    animation = Image.open(io.BytesIO(base64.b64decode(item["data"])))
    assert animation.format == "WEBP"
    assert getattr(animation, "n_frames", 1) == 3
    assert body["outputs"]["6"]["animated"] == [True]


@pytest.mark.parametrize(("fmt", "pil_format", "suffix"), [("webp", "WEBP", ".webp"), ("jpeg", "JPEG", ".jpg")])
def test_output_format_converts_still_images(service: Service, fmt: str, pil_format: str, suffix: str) -> None:
    workflow = empty_image_workflow(size=32, batch=2, color=0xC08040, prefix=f"svc-{fmt}")
    response = service.predict({"workflow": workflow, "output": {"format": fmt, "quality": 90}})

    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 2
    for image in images:
        assert image["filename"].endswith(suffix)
        assert image["content_type"] == f"image/{fmt}"
        picture = _image(image["image"])
        assert picture.format == pil_format
        assert picture.size == (32, 32)
        assert _close(picture.convert("RGB").getpixel((16, 16)), (0xC0, 0x80, 0x40), 6)
