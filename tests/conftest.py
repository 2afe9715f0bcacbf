"""Session fixtures: one real ComfyUI, booted once and shared by every test that needs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from job.comfyui.process import ComfyServer
from job.runner import Runner
from job.settings import Settings
from tests.support.comfy import comfy_settings


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ComfyUI's base directory for the session: models, input, output, temp."""
    return tmp_path_factory.mktemp("comfy-base")


@pytest.fixture(scope="session")
def comfy_settings_session(comfy_base: Path) -> Settings:
    return comfy_settings(comfy_base)


@pytest.fixture(scope="session")
def comfy_server(comfy_settings_session: Settings) -> Iterator[ComfyServer]:
    """The shared, real ComfyUI child (CPU). Tests that kill ComfyUI start their own instead."""
    server = ComfyServer(comfy_settings_session).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def runner(comfy_server: ComfyServer, comfy_settings_session: Settings) -> Iterator[Runner]:
    shared = Runner(comfy_server, comfy_settings_session)
    yield shared
    shared.close()
