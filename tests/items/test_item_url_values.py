"""An inbox item whose LoadImage names its file by a gs:// URL: the job fetches it with its own
fetcher, as it fetches `inputs` (docs/api.md section 2), or records the refusal naming the node."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.items.conftest import job_env
from tests.support.comfy import invert_workflow, png_bytes

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]


def test_a_gs_url_value_is_fetched_by_the_job(gcs, drop, inbox, run_job, attached):
    inbox.blob("assets/url-value.png").upload_from_string(png_bytes(color=(0, 0, 0)), content_type="image/png")
    item = drop({"workflow": invert_workflow(f"gs://{inbox.name}/assets/url-value.png", prefix="job_url")})

    code, log = run_job(job_env(gcs, request_uri=item.request_uri, outbox_uri=item.outbox_uri, **attached))

    assert code == 0, log
    result = item.result()
    assert result["status"] == "success", result
    [image] = result["images"]
    relpath = f"{image['subfolder']}/{image['filename']}" if image["subfolder"] else image["filename"]
    with Image.open(io.BytesIO(item.outbox_object(relpath).download_as_bytes())) as img:
        assert img.convert("RGB").getpixel((0, 0)) == (255, 255, 255)


def test_a_missing_gs_url_value_is_a_finished_not_found_naming_the_node(gcs, drop, inbox, run_job, attached):
    item = drop({"workflow": invert_workflow(f"gs://{inbox.name}/assets/nothing-here.png")})

    code, log = run_job(job_env(gcs, request_uri=item.request_uri, outbox_uri=item.outbox_uri, **attached))

    assert code == 0, log
    error = item.result()["error"]
    assert error["type"] == "not_found"
    assert error["message"].startswith("node 1 (LoadImage) input 'image': ")
