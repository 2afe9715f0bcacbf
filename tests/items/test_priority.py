"""A job task yields the CPU to the ComfyUI it boots: its own threads run at a lower priority.

The ComfyUI here is a stand-in main.py (named as such) that reports its own niceness and its
parent's, then exits (so the task fails as a retryable one): what is checked is the job command's
process set-up, not ComfyUI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STAND_IN_MAIN = """
import os, sys, time
time.sleep(1.0)  # the job has set its priority by now
own, parent = os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, os.getppid())
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "priorities.json"), "w") as out:
    out.write('{"comfyui": %d, "job": %d}' % (own, parent))
sys.exit(3)
"""


def test_the_booted_comfyui_keeps_the_default_priority_and_the_job_yields(tmp_path: Path) -> None:
    comfyui = tmp_path / "ComfyUI"
    comfyui.mkdir()
    (comfyui / "main.py").write_text(STAND_IN_MAIN)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}))
    env = {**os.environ, "COMFYUI_DIR": str(comfyui), "LOG_FORMAT": "json", "COMFYUI_BOOT_TIMEOUT_S": "30"}
    env.pop("COMFYUI_URL", None)

    finished = subprocess.run(
        [sys.executable, "-m", "job", "job", str(request), "--outbox", str(tmp_path / "out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    priorities = json.loads((comfyui / "priorities.json").read_text())
    assert priorities["comfyui"] == os.getpriority(os.PRIO_PROCESS, 0), "ComfyUI keeps the priority it was given"
    assert priorities["job"] == priorities["comfyui"] + 10, finished.stderr[-2000:]
    assert finished.returncode == 1, "a ComfyUI that exits at boot is the infrastructure's failure: retry"
    assert "exited with code 3" in finished.stdout + finished.stderr
