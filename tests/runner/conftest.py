"""Fixtures for the runner tests: ComfyUI instances of a test's own, for tests that kill or restart one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from job.comfyui.process import ComfyServer
from job.runner import Runner
from tests.support.comfy import comfy_settings


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ComfyServer]:
    """A ComfyUI child of this test alone (booted, ~10 s), stopped afterwards whatever the test did."""
    server = ComfyServer(comfy_settings(tmp_path / "base")).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_runner(own_server: ComfyServer) -> Iterator[Runner]:
    runner = Runner(own_server, own_server.settings)
    yield runner
    runner.close()
