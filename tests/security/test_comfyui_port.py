"""Our ComfyUI is ours: a managed server never takes a foreign server on its port for its child.

Before: a second `serve` given the port of a running ComfyUI logged "ComfyUI ready in 0.0 s" and ran
requests on that foreign instance, while its own child looped on "address already in use".
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from job.comfyui.process import ComfyServer, State
from job.devstack.gcs_emulator import GcsEmulator, free_port
from job.engine.runner import Runner
from job.errors import ComfyUnavailable
from job.service.app import create_app
from tests.service.conftest import emulator_storages
from tests.support.comfy import comfy_settings, empty_image_workflow
from tests.support.serve import serve_in_thread
from tests.support.waiting import wait_for

pytestmark = pytest.mark.comfyui


def _history_size(server: ComfyServer) -> int:
    return len(httpx.get(f"{server.base_url}/history", timeout=30).json())


def test_a_second_managed_comfyui_on_a_taken_port_refuses_naming_the_port_and_the_setting(
    comfy_server: ComfyServer, tmp_path: Path
) -> None:
    port = comfy_server.config.port
    second = ComfyServer(comfy_settings(tmp_path, comfyui_port=port).comfyui()).start()
    started = time.monotonic()
    try:
        with pytest.raises(ComfyUnavailable) as caught:
            second.wait_ready(timeout_s=60)
        elapsed = time.monotonic() - started
        assert second.state is State.FAILED
    finally:
        second.stop()

    message = caught.value.message
    assert f"COMFYUI_PORT {port} on 127.0.0.1 is taken (something already answers there)" in message
    assert f"COMFYUI_URL=http://127.0.0.1:{port}" in message, "and how to attach to what runs there instead"
    assert elapsed < 5, f"took {elapsed:.1f} s: refused before any spawn, not after a boot timeout"
    assert second.pid is None and second.generation == 0, "no child was started"
    assert second.boot_s is None
    assert comfy_server.ready, "the ComfyUI that had the port keeps running"


def test_a_port_held_without_listening_is_refused_too(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: nothing answers, yet no child could bind it
        port = holder.getsockname()[1]
        server = ComfyServer(comfy_settings(tmp_path, comfyui_port=port).comfyui()).start()
        try:
            with pytest.raises(ComfyUnavailable) as caught:
                server.wait_ready(timeout_s=30)
        finally:
            server.stop()

    assert f"COMFYUI_PORT {port} on 127.0.0.1 is taken (it is bound already" in caught.value.message
    assert server.pid is None


class _ForeignComfy(BaseHTTPRequestHandler):
    """A stand-in for another ComfyUI on the port: it answers /system_stats with a command line not ours."""

    def do_GET(self) -> None:
        body = json.dumps({"system": {"argv": ["/elsewhere/ComfyUI/main.py", "--port", "1"]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _foreign_server(port: int) -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _ForeignComfy)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_readiness_is_not_taken_from_a_server_that_answers_in_the_childs_place(tmp_path: Path) -> None:
    port = free_port()
    server = ComfyServer(comfy_settings(tmp_path, comfyui_port=port).comfyui()).start()
    try:
        # The port was free at the check; another server takes it before our child binds it.
        pid = wait_for(lambda: server.pid, timeout_s=30, what="the child's spawn")
        with _foreign_server(port):
            with pytest.raises(ComfyUnavailable) as caught:
                server.wait_ready(timeout_s=60)
            assert server.state is State.FAILED
            wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout_s=20, what="our child stopped")
    finally:
        server.stop()

    assert f"another server answers at http://127.0.0.1:{port} in our ComfyUI's place" in caught.value.message
    assert "COMFYUI_PORT" in caught.value.message
    assert server.boot_s is None, "never ready"
    assert server.generation == 1, "not restarted into the same trap"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def test_predict_on_a_worker_whose_port_is_taken_answers_503_and_queues_nothing_on_the_foreign_comfyui(
    comfy_server: ComfyServer, tmp_path: Path, gcs: GcsEmulator
) -> None:
    settings = comfy_settings(tmp_path, comfyui_port=comfy_server.config.port, log_format="json")
    server = ComfyServer(settings.comfyui()).start()
    runner = Runner(server)
    before = _history_size(comfy_server)
    try:
        app = create_app(settings, runner, storages=emulator_storages(gcs))
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            health = wait_for(
                lambda: (r := http.get("/healthz")).json().get("comfyui") == "failed" and r,
                timeout_s=30,
                what="/healthz to report the failure",
            )
            response = http.post("/predict", json={"workflow": empty_image_workflow(size=8, prefix="foreign")})
    finally:
        runner.close()
        server.stop()

    assert health.status_code == 503
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["type"] == "comfyui_unavailable"
    assert f"COMFYUI_PORT {comfy_server.config.port}" in error["message"]
    assert _history_size(comfy_server) == before, "nothing ran on the ComfyUI that had the port"
