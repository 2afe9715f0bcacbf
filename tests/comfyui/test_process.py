"""The ComfyUI process manager: attaching, failing fast at boot, and leaving nothing behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from job.comfyui.process import ComfyServer, State
from job.engine.runner import Runner
from job.errors import ComfyUnavailable
from tests.support.comfy import comfy_settings, empty_image_workflow

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the session's or the test's own


def test_runner_attaches_to_a_comfyui_already_running_at_comfyui_url(comfy_server: ComfyServer, tmp_path: Path) -> None:
    settings = comfy_settings(tmp_path, comfyui_url=comfy_server.base_url + "/")
    attached = ComfyServer(settings.comfyui()).start()
    runner = Runner(attached)
    try:
        result = runner.run(empty_image_workflow(size=8, prefix="attached"), timeout_s=30)
    finally:
        runner.close()
        attached.stop()

    assert not attached.managed and attached.pid is None
    assert result.files[0].filename.startswith("attached")
    assert comfy_server.ready, "stopping an attached server must leave the ComfyUI it watched running"


def test_comfyui_that_exits_at_boot_fails_wait_ready_at_once_with_its_log(tmp_path: Path) -> None:
    settings = comfy_settings(tmp_path, comfyui_args="--no-such-flag", comfyui_boot_timeout_s=120)
    server = ComfyServer(settings.comfyui()).start()
    started = time.monotonic()
    try:
        with pytest.raises(ComfyUnavailable) as caught:
            server.wait_ready()
        elapsed = time.monotonic() - started
        assert server.state is State.FAILED
    finally:
        server.stop()

    assert elapsed < 30, f"took {elapsed:.1f} s: a dead child must not wait out the boot timeout"
    assert "unrecognized arguments: --no-such-flag" in caught.value.message
    assert server.generation == 1, "a child that never came up is not restarted"


def test_stop_leaves_no_comfyui_process_behind(own_server: ComfyServer) -> None:
    pid = own_server.pid
    assert pid is not None and own_server.ready

    own_server.stop()

    assert own_server.state is State.STOPPED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the child led its own process group: nothing of it is left either
