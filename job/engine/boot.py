"""Bringing ComfyUI up for a front end (CLI, job, service) and taking it down on any exit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from job.comfyui.install import install_comfyui
from job.comfyui.model_sync import sync_models
from job.comfyui.process import ComfyServer
from job.engine.runner import Runner
from job.settings import Settings


@contextmanager
def comfyui_runner(settings: Settings, *, install: bool = True, server: ComfyServer | None = None) -> Iterator[Runner]:
    """A Runner on a started ComfyUI (a child, or attached via COMFYUI_URL); stopped on exit.

    The server is started but not awaited: callers overlap their own preparation with the boot,
    and `Runner.run` waits for readiness. A `server` the caller started already is used (and stopped).
    """
    if server is None and install and settings.comfyui_url is None and not (settings.comfyui_dir / "main.py").is_file():
        install_comfyui(settings.comfyui_dir, archive=settings.comfyui_archive)
    server = (server or ComfyServer(settings.comfyui())).start()
    runner = Runner(server)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="models") as pool:
        if settings.models_uri:
            # Models land while ComfyUI boots; it lists model folders lazily, and no run starts
            # before the copy is done (wait_ready waits for it).
            server.require(
                pool.submit(
                    sync_models,
                    settings.models_uri,
                    settings.comfyui_dir,
                    settings.models_download_workers,
                    project=settings.google_cloud_project,
                )
            )
        try:
            yield runner
        finally:
            runner.close()
            server.stop()
            sys.stderr.flush()
