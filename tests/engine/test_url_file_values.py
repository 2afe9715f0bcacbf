"""A file input's value may be a URL: fetched as the request's `inputs` are, or refused naming the node.

Real parts: the session ComfyUI, a loopback HTTP server (tests/support/files_server.py) reached
with ALLOW_PRIVATE_URLS as local runs do, the GCS emulator for gs://, and the request's own bounded
fetcher (`reference_fetcher`), through `Runner.run` (what every way in goes through); POST /predict's
are in tests/service/test_predict_url_values.py.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from job.comfyui.process import ComfyServer
from job.devstack.gcs_emulator import GcsEmulator
from job.engine.fetch import reference_fetcher
from job.engine.inputs import Fetch
from job.engine.runner import Runner
from job.errors import InputNotFound, InvalidInput, RequestError
from job.settings import Settings
from tests.service.conftest import emulator_storages
from tests.support.comfy import invert_workflow, png_bytes
from tests.support.files_server import FilesServer

pytestmark = pytest.mark.comfyui

BLACK = png_bytes((8, 8), (0, 0, 0))


def _history_size(server: ComfyServer) -> int:
    """How many prompts ComfyUI has run: a refused URL must not add one."""
    return len(httpx.get(f"{server.base_url}/history", timeout=30).json())


def _pixel(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as img:
        pixel = img.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel


def _run_folders(comfy_base: Path) -> set[Path]:
    """The per-run input folders now (jobs of other tests that attach to this ComfyUI leave theirs)."""
    runs = comfy_base / "input" / "_runs"
    return set(runs.iterdir()) if runs.is_dir() else set()


@pytest.fixture
def fetcher(comfy_settings_session: Settings, gcs: GcsEmulator) -> Any:
    """The request's own fetcher, as /predict and the job build it, with settings overrides."""

    def make(**overrides: Any) -> Fetch:
        settings = comfy_settings_session.model_copy(update=overrides)
        return reference_fetcher(settings, emulator_storages(gcs))

    return make


def test_an_url_value_is_fetched_once_and_the_run_reads_it(runner: Runner, fetcher: Any, comfy_base: Path) -> None:
    folders = _run_folders(comfy_base)
    with FilesServer({"/photo.png": BLACK}) as files:
        url = files.url("/photo.png")
        workflow = {
            **invert_workflow(url, prefix="url_value"),
            "5": {"class_type": "LoadImage", "inputs": {"image": url}},  # the same URL twice: one file
            "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "url_same"}},
        }
        result = runner.run(workflow, fetch=fetcher(allow_private_urls=True), timeout_s=60)
        assert [path for path, _host in files.requests] == ["/photo.png"]

    inverted, same = result.files
    assert _pixel(inverted.data) == (255, 255, 255)
    assert _pixel(same.data) == (0, 0, 0)
    assert _run_folders(comfy_base) == folders, "the fetched file went with the run"


def test_a_gs_url_value_is_fetched(runner: Runner, fetcher: Any, gcs: GcsEmulator) -> None:
    gcs.client().bucket("inputs").blob("url-values/photo.png").upload_from_string(BLACK)

    result = runner.run(invert_workflow("gs://inputs/url-values/photo.png"), fetch=fetcher(), timeout_s=60)

    assert _pixel(result.files[0].data) == (255, 255, 255)


@pytest.mark.parametrize(
    ("route", "settings", "error", "status", "says"),
    [
        ("/photo.png", {}, InvalidInput, 400, "only fetched from public hosts"),  # https://127.0.0.1
        ("/gone.png", {"allow_private_urls": True}, InputNotFound, 404, "does not exist"),
        ("/notes.txt", {"allow_private_urls": True}, InvalidInput, 400, "is not an image"),
        ("/photo.png", {"allow_private_urls": True, "input_max_bytes": 50}, InvalidInput, 400, "INPUT_MAX_BYTES"),
    ],
    ids=["private-address", "not-found", "not-an-image", "too-large"],
)
def test_a_refused_url_value_is_a_4xx_naming_the_node_and_input(
    runner: Runner,
    fetcher: Any,
    comfy_server: ComfyServer,
    comfy_base: Path,
    route: str,
    settings: dict[str, Any],
    error: type[RequestError],
    status: int,
    says: str,
) -> None:
    before, folders = _history_size(comfy_server), _run_folders(comfy_base)
    with FilesServer({"/photo.png": BLACK, "/notes.txt": b"hello, not a picture"}) as files:
        url = files.url(route)
        if not settings.get("allow_private_urls"):
            url = url.replace("http://", "https://")
        with pytest.raises(error) as caught:
            runner.run(invert_workflow(url), fetch=fetcher(**settings), timeout_s=30)
        if not settings.get("allow_private_urls"):
            assert files.requests == [], "never contacted"

    assert type(caught.value) is error and caught.value.status_code == status
    assert caught.value.message.startswith("node 1 (LoadImage) input 'image': ")
    assert says in caught.value.message
    assert _history_size(comfy_server) == before, "nothing queued"
    assert _run_folders(comfy_base) == folders


def test_a_url_value_without_a_fetcher_is_refused_with_the_fix(runner: Runner) -> None:
    with pytest.raises(InvalidInput) as caught:
        runner.run(invert_workflow("https://example.com/photo.png"), timeout_s=30)

    assert caught.value.message.startswith("node 1 (LoadImage) input 'image': a URL value is not fetched here")
    assert "`images`" in caught.value.message


def test_a_url_in_an_input_that_names_no_file_is_left_alone(runner: Runner, fetcher: Any) -> None:
    with FilesServer({"/photo.png": BLACK}) as files:
        workflow = {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "PrimitiveString", "inputs": {"value": files.url("/photo.png")}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "url_text"}},
        }
        runner.run(workflow, fetch=fetcher(allow_private_urls=True), timeout_s=60)
        assert files.requests == [], "a string input is text, not a file to fetch"
