"""GET /healthz: 503 until ComfyUI answers and the warm-up ran, 503 again while ComfyUI restarts."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from job.comfyui.process import ComfyServer
from job.engine.runner import Runner
from job.service.app import create_app
from job.storage import Storages
from tests.service.conftest import MakeService
from tests.support.comfy import comfy_settings, empty_image_workflow, expected_comfyui_version, slow_workflow
from tests.support.serve import serve_in_thread

pytestmark = pytest.mark.comfyui


def wait_for_status(http: httpx.Client, status: int, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = http.get("/healthz")
        if response.status_code == status:
            body: dict[str, object] = response.json()
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"/healthz stayed {response.status_code} {response.text}, expected {status}")
        time.sleep(0.05)


@pytest.mark.slow
def test_healthz_is_503_until_comfyui_answers_and_during_a_restart(tmp_path: Path, storages: Storages) -> None:
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps({"workflow": empty_image_workflow(size=8, prefix="boot-warmup")}))
    # KEEP_OUTPUTS: the warm-up outputs this test counts stay on disk once read.
    settings = comfy_settings(tmp_path, log_format="json", warmup_workflow=str(warmup), keep_outputs=True)
    server = ComfyServer(settings.comfyui()).start()
    runner = Runner(server)
    try:
        with (
            serve_in_thread(create_app(settings, runner, storages=storages)) as url,
            httpx.Client(base_url=url) as http,
        ):
            booting = http.get("/healthz")
            assert booting.status_code == 503
            assert booting.json()["comfyui"] == "starting"
            assert http.get("/").json()["ready"] is False

            assert wait_for_status(http, 200, timeout_s=120) == {
                "status": "ok", "comfyui": "ready", "warmup": "done", "detail": None,
            }  # fmt: skip
            assert len(list((tmp_path / "output").glob("boot-warmup*"))) == 1
            info = http.get("/").json()
            assert info["ready"] is True
            assert info["comfyui_version"] == expected_comfyui_version(settings)

            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)  # a crash: the supervisor restarts ComfyUI
            down = wait_for_status(http, 503, timeout_s=10)
            assert down["comfyui"] in ("restarting", "starting")

            wait_for_status(http, 200, timeout_s=120)
            assert server.generation == 2
            warmed = list((tmp_path / "output").glob("boot-warmup*"))
            assert len(warmed) == 2, "the restarted ComfyUI was warmed up too, before /healthz said ok"
    finally:
        runner.close()
        server.stop()


@pytest.mark.slow
def test_healthz_waits_for_the_warm_up_workflow(make_service: MakeService, tmp_path: Path) -> None:
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps({"workflow": slow_workflow(blurs=6, size=512, prefix="svc-warmup")}))

    with make_service(warmup_workflow=str(warmup)) as service:
        first = service.http.get("/healthz")
        assert first.status_code == 503
        assert first.json()["warmup"] in ("pending", "running")

        body = wait_for_status(service.http, 200, timeout_s=60)
        assert body["warmup"] == "done"
        assert service.http.get("/").json()["warmup"] == "done"


def test_failed_warm_up_keeps_healthz_503_and_says_why(make_service: MakeService, tmp_path: Path) -> None:
    warmup = tmp_path / "broken.json"
    warmup.write_text(json.dumps({"1": {"class_type": "NoSuchNode", "inputs": {}}}))

    with make_service(warmup_workflow=str(warmup)) as service:
        deadline = time.monotonic() + 30
        while service.http.get("/healthz").json()["warmup"] != "failed":
            assert time.monotonic() < deadline, "the warm-up did not fail"
            time.sleep(0.05)
        response = service.http.get("/healthz")

        assert response.status_code == 503
        assert "WARMUP_WORKFLOW" in response.json()["detail"]
        assert "NoSuchNode" in response.json()["detail"]
        # The service itself still works; only the probe says this instance is not ready.
        assert service.predict({"workflow": empty_image_workflow(size=8, color=0x777)}).status_code == 200
