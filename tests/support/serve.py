"""A real uvicorn server in a thread, on a free loopback port: real HTTP for the service's tests."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from job.devstack.gcs_emulator import free_port


@contextmanager
def serve_in_thread(app: Any, *, startup_timeout_s: float = 20.0) -> Iterator[str]:
    """Serve `app` (lifespan included) and yield its base URL; shut it down on exit."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start; see the log above")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def serve_process_env(port: int, comfyui_dir: Path, base_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a real `worker-comfyui serve` process on `port`, with a ComfyUI child of its
    own (a free port, its folders under `base_dir`) and JSON logs; `extra` adds or replaces variables."""
    return {
        **os.environ,
        "PORT": str(port),
        "COMFYUI_DIR": str(comfyui_dir),
        "COMFYUI_PORT": str(free_port()),
        "COMFYUI_ARGS": f"--base-directory {base_dir} --disable-all-custom-nodes",
        "COMFY_LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        **extra,
    }
