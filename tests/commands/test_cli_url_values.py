"""`worker-comfyui run` fetches a file input's URL value as the job and /predict do (docs/api.md section 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.support.comfy import invert_workflow, png_bytes
from tests.support.files_server import FilesServer

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[2]


def test_run_command_fetches_a_url_value(tmp_path: Path, attached: dict[str, str]) -> None:
    out = tmp_path / "out"
    with FilesServer({"/photo.png": png_bytes((8, 8), (0, 0, 0))}) as files:
        request = tmp_path / "request.json"
        request.write_text(json.dumps({"workflow": invert_workflow(files.url("/photo.png"), prefix="cli_url")}))
        env = {**os.environ, **attached, "ALLOW_PRIVATE_URLS": "true"}
        command = [str(Path(sys.executable).with_name("worker-comfyui")), "run", str(request), "--out", str(out)]

        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
        assert [path for path, _host in files.requests] == ["/photo.png"]

    assert done.returncode == 0, done.stderr[-3000:]
    (image,) = [Path(line) for line in done.stdout.splitlines() if line.strip()]
    with Image.open(image) as img:
        assert img.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
