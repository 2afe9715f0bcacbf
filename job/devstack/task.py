"""One locally launched job task that boots its own ComfyUI: pick a free port, then become `worker-comfyui job`.

On Cloud Run each task has a container of its own, so ComfyUI's port is always free there; here
tasks share one machine (and the dev stack's ComfyUI), so each gets a free port first. `execv`
keeps the pid and process group, so the Admin API stand-in still stops the task it started.
`worker-comfyui dev --job-boots-comfyui` launches tasks with `python -m job.devstack.task`.
"""

from __future__ import annotations

import os
import sys

from job.devstack.gcs_emulator import free_port


def main() -> None:
    os.environ["COMFYUI_PORT"] = str(free_port())
    os.execv(sys.executable, [sys.executable, "-m", "job", "job"])  # noqa: S606 (an argument list, no shell)


if __name__ == "__main__":
    main()
