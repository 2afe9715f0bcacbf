"""Fixtures for the driver's tests: a ComfyUI of a test's own, for tests that kill or restart one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from job.comfyui.process import ComfyServer
from tests.support.comfy import comfy_settings


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ComfyServer]:
    """A ComfyUI child of this test alone (booted, ~10 s), stopped afterwards whatever the test did."""
    server = ComfyServer(comfy_settings(tmp_path / "base").comfyui()).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
