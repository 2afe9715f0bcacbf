"""`worker-comfyui run` as a user types it: a subprocess that boots its own ComfyUI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from job.devstack.gcs_emulator import free_port

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the session's or the test's own

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_command_writes_the_outputs_and_prints_their_paths(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ,
        "COMFYUI_PORT": str(free_port()),
        "COMFYUI_ARGS": f"--base-directory {tmp_path / 'base'} --disable-all-custom-nodes",
        "COMFY_LOG_LEVEL": "INFO",
    }
    env.pop("COMFYUI_URL", None)
    command = [
        str(Path(sys.executable).with_name("worker-comfyui")), "run", "workflows/invert_input.json",
        "--image", "input.png=workflows/input.png", "--out", str(out),
    ]  # fmt: skip

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)

    assert done.returncode == 0, done.stderr[-3000:]
    printed = [Path(line) for line in done.stdout.splitlines() if line.strip()]
    assert printed, done.stderr[-3000:]
    assert all(path.is_file() and path.is_relative_to(out) for path in printed)
    (image,) = printed
    with Image.open(image) as img:
        assert img.size == (128, 128)
    assert "done" in done.stderr
