"""Bringing ComfyUI up for a front end (CLI, job, service) and taking it down on any exit."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from job.comfyui.install import install_comfyui
from job.comfyui.process import ComfyServer
from job.runner import Runner
from job.settings import Settings


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` (and ComfyUI's shutdown) runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@contextmanager
def comfyui_runner(settings: Settings, *, install: bool = True) -> Iterator[Runner]:
    """A Runner on a started ComfyUI (a child, or attached via COMFYUI_URL); stopped on exit.

    The server is started but not awaited: callers overlap their own preparation with the boot,
    and `Runner.run` waits for readiness.
    """
    if install and settings.comfyui_url is None and not (settings.comfyui_dir / "main.py").is_file():
        install_comfyui(settings.comfyui_dir)
    server = ComfyServer(settings).start()
    runner = Runner(server, settings)
    try:
        yield runner
    finally:
        runner.close()
        server.stop()
        sys.stderr.flush()
