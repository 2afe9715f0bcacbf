"""Shutdown as Cloud Run does it, against a real `worker-comfyui serve` process: SIGTERM, then about 10 s.

From SIGTERM on, new and queued requests get the contract's JSON 503 `shutting_down` with Retry-After
at once; the running one finishes within SHUTDOWN_GRACE_S or gets the same JSON 503; nothing is
ever text/plain, and the process exits (ComfyUI with it) once every request has its answer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from job.devstack.gcs_emulator import free_port
from job.settings import Settings
from tests.support.comfy import empty_image_workflow, slow_workflow
from tests.support.serve import serve_process_env

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]


@contextmanager
def serving(tmp_path: Path, settings: Settings, grace_s: float) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """A real `worker-comfyui serve` with its own ComfyUI child, healthy; killed if a test leaves it running."""
    port = free_port()
    env = serve_process_env(
        port,
        settings.comfyui_dir,
        tmp_path,
        COMFYUI_ARGS=f"--base-directory {tmp_path} --disable-all-custom-nodes --disable-api-nodes",
        SHUTDOWN_GRACE_S=str(grace_s),
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        command = [sys.executable, "-m", "job", "serve", "--host", "127.0.0.1"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while not _healthy(url):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "serve never became healthy"
            time.sleep(0.2)
        yield proc, url, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def children(pid: int) -> set[int]:
    return {
        int(child) for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()
    }


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def post_in_background(url: str, workflow: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """POST /predict on a thread of its own; `answer` gets the response and when it came."""
    answer: dict[str, Any] = {}

    def post() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            answer["response"] = http.post("/predict", json={"workflow": workflow})
            answer["at"] = time.monotonic()

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, answer


def wait_admitted(url: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/", timeout=5).json()["queued"] < count:
        assert time.monotonic() < deadline, f"never {count} request(s) admitted"
        time.sleep(0.05)


def assert_shutting_down(response: httpx.Response, log_path: Path) -> None:
    assert response.status_code == 503, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["type"] == "shutting_down" and "traceback" not in error
    assert error["id"] in log_path.read_text(), "the refusal's id is in the service's log"


def test_sigterm_answers_new_and_queued_requests_503_at_once_and_stops_the_running_one_at_the_grace(
    tmp_path: Path, comfy_settings_session: Settings
) -> None:
    grace_s = 3.0
    with serving(tmp_path, comfy_settings_session, grace_s) as (proc, url, log_path):
        running, ran = post_in_background(url, slow_workflow(blurs=300, size=1024, prefix="sigterm-slow"))
        wait_admitted(url, 1)
        queued, waited = post_in_background(url, empty_image_workflow(size=8, prefix="sigterm-queued"))
        wait_admitted(url, 2)
        comfyui = children(proc.pid)

        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        newcomer = httpx.post(f"{url}/predict", json={"workflow": empty_image_workflow(size=8)}, timeout=10)
        health = httpx.get(f"{url}/healthz", timeout=10)
        queued.join(10)
        running.join(30)
        code = proc.wait(timeout=30)

    assert_shutting_down(newcomer, log_path)
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert_shutting_down(waited["response"], log_path)
    assert waited["at"] - sent < 1.5, "the queued request was answered at once"
    assert_shutting_down(ran["response"], log_path)
    assert grace_s - 0.5 < ran["at"] - sent < grace_s + 3, "the running request had its grace, and no more"
    assert code == 0
    assert comfyui and not [pid for pid in comfyui if alive(pid)], "ComfyUI stopped with the service"
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert not [line for line in lines if "Exception in ASGI application" in line["message"]]


def test_sigterm_lets_a_running_request_finish_within_the_grace_and_then_exits(
    tmp_path: Path, comfy_settings_session: Settings
) -> None:
    grace_s = 30.0
    with serving(tmp_path, comfy_settings_session, grace_s) as (proc, url, _):
        running, ran = post_in_background(url, slow_workflow(blurs=3, size=256, prefix="sigterm-done"))
        wait_admitted(url, 1)

        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        running.join(30)
        code = proc.wait(timeout=30)
        exited = time.monotonic()

    assert ran["response"].status_code == 200, ran["response"].text[:500]
    assert ran["response"].json()["images"][0]["filename"].startswith("sigterm-done")
    assert code == 0 and exited - sent < grace_s / 2, "the drain ends with the last request, not at the grace"
