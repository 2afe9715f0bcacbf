"""`worker-comfyui serve`: boots ComfyUI, serves on $PORT, and leaves no ComfyUI behind on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from job.devstack.gcs_emulator import free_port
from job.settings import Settings
from tests.support.comfy import empty_image_workflow
from tests.support.serve import serve_process_env

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_serve_answers_and_sigterm_stops_comfyui_too(tmp_path: Path, comfy_settings_session: Settings) -> None:
    port = free_port()
    env = serve_process_env(port, comfy_settings_session.comfyui_dir, tmp_path)
    command = [sys.executable, "-m", "job", "serve", "--host", "127.0.0.1"]
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 150
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve never became healthy"
                time.sleep(0.2)
            response = http.post("/predict", json={"workflow": empty_image_workflow(size=8, prefix="svc-serve")})
            assert response.status_code == 200, response.text

        comfyui = children(proc.pid)
        assert comfyui, "ComfyUI should run as our child"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code in (0, 128 + signal.SIGTERM)
        time.sleep(0.5)
        assert not [pid for pid in comfyui if alive(pid)]
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        ours = [line for line in lines if line["logger"] != "comfyui"]  # ComfyUI's own lines are forwarded as-is
        assert ours and all(line["severity"] in ("INFO", "WARNING") for line in ours), ours[-5:]
        assert not [line for line in ours if "exception" in line]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
