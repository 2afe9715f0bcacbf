"""Session fixtures: one real ComfyUI and one fake-gcs-server, each started once and shared."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from job.comfyui.process import ComfyServer
from job.devstack.gcs_emulator import GcsEmulator
from job.engine.runner import Runner
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
    server = ComfyServer(comfy_settings_session.comfyui()).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def runner(comfy_server: ComfyServer) -> Iterator[Runner]:
    shared = Runner(comfy_server)
    yield shared
    shared.close()


@pytest.fixture(autouse=True)
def shared_comfyui_free(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test on the shared runner, wait until ComfyUI has finished any prompt that outlived
    its run (job/comfyui/overrun.py), so the next test does not meet a busy instance's 503s."""
    yield
    if "runner" in request.fixturenames:
        shared: Runner = request.getfixturevalue("runner")
        shared.overruns.wait_free(time.monotonic() + 120)


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """The session's fake-gcs-server (filesystem backend, free loopback port, project local-project).

    `outbox`, `inbox` and `inputs` are shared: tests keep apart in them by prefix. A test that needs
    a bucket to itself (an inbox whose claims or listing it checks) creates one with a random name.
    """
    with GcsEmulator(tmp_path_factory.mktemp("gcs"), buckets=["outbox", "inbox", "inputs"]) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def gcs_client(gcs: GcsEmulator) -> Any:
    return gcs.client()


@pytest.fixture
def inbox(gcs: GcsEmulator, gcs_client: Any) -> Any:
    """An inbox bucket of this test's own, so names, claims and listings never mix between tests."""
    name = f"inbox-{secrets.token_hex(4)}"
    gcs.create_bucket(name)
    return gcs_client.bucket(name)


@pytest.fixture
def attached(comfy_server: ComfyServer) -> dict[str, str]:
    """COMFYUI_* for a job or batch task that attaches to the session ComfyUI instead of booting one."""
    return {"COMFYUI_URL": comfy_server.base_url, "COMFYUI_DIR": str(comfy_server.config.dir)}
