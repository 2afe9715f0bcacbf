"""Runs that go wrong on the way: a deadline, a cut websocket, a killed ComfyUI. Each ends cleanly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from job.comfyui.process import ComfyServer, State
from job.comfyui.tracker import Progress
from job.engine.runner import Runner
from job.errors import ComfyCrashed, RunTimeout
from tests.support.comfy import comfy_settings, empty_image_workflow, slow_workflow
from tests.support.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the session's or the test's own


def test_run_past_its_deadline_is_interrupted_and_the_next_run_succeeds(runner: Runner) -> None:
    prompt_ids: set[str] = set()
    started = time.monotonic()
    with pytest.raises(RunTimeout) as caught:
        runner.run(slow_workflow(blurs=60), timeout_s=1.5, on_progress=lambda p: prompt_ids.add(p.prompt_id))
    elapsed = time.monotonic() - started

    assert "deadline of 1.5 s" in caught.value.message
    assert caught.value.status_code == 504
    (prompt_id,) = prompt_ids
    # The answer came at the deadline; the blur under way at it ends in the background.
    runner.overruns.wait_free(time.monotonic() + 30)
    entry = runner.client.history(prompt_id)
    assert entry is not None
    assert "execution_interrupted" in [name for name, _ in entry["status"]["messages"]], "ComfyUI stopped it midway"
    assert elapsed < 20, "the interrupt lands between two nodes, long before sixty blurs are done"
    assert not runner.client.queue().holds(prompt_id), "the interrupted prompt must not keep ComfyUI busy"
    follow_up = runner.run(empty_image_workflow(size=8), timeout_s=30)
    assert len(follow_up.files) == 1


@pytest.mark.slow
def test_run_completes_via_history_when_the_websocket_is_cut(comfy_server: ComfyServer, tmp_path: Path) -> None:
    with CuttableProxy(comfy_server.config.port) as proxy:
        settings = comfy_settings(tmp_path, comfyui_url=proxy.url, websocket_reconnect_attempts=2)
        server = ComfyServer(settings.comfyui()).start()
        runner = Runner(server)
        seen: list[str] = []

        def cut_once_running(progress: Progress) -> None:
            seen.append(progress.state)
            if progress.state == "running" and not proxy.websockets_cut:
                proxy.cut_websockets()

        try:
            result = runner.run(slow_workflow(blurs=8, size=512), timeout_s=60, on_progress=cut_once_running)
        finally:
            runner.close()
            server.stop()

    assert proxy.websockets_cut == 1
    assert proxy.websockets_refused == 2, "the runner should have tried to reconnect, as configured"
    assert "finished" not in seen, "the end was never seen on the socket: the result came from /history"
    assert len(result.files) == 1
    assert result.files[0].data.startswith(b"\x89PNG")


@pytest.mark.slow
def test_killed_comfyui_is_reported_as_crash_then_restarted_for_the_next_run(tmp_path: Path) -> None:
    server = ComfyServer(comfy_settings(tmp_path).comfyui()).start()
    runner = Runner(server)
    try:
        server.wait_ready()
        first_pid = server.pid
        assert first_pid is not None

        def kill_when_running(progress: Progress) -> None:
            if progress.state == "running" and server.pid == first_pid and server.generation == 1:
                os.kill(first_pid, signal.SIGKILL)

        with pytest.raises(ComfyCrashed) as caught:
            runner.run(slow_workflow(blurs=30, size=512), timeout_s=60, on_progress=kill_when_running)
        assert caught.value.retryable
        assert "crashed" in caught.value.message or "restarted" in caught.value.message
        assert caught.value.status_code == 502

        server.wait_ready(180)  # the restart is a full boot: generous, for a loaded CI box
        assert server.state is State.READY
        assert server.generation == 2
        assert server.pid != first_pid
        result = runner.run(empty_image_workflow(size=8), timeout_s=30)
        assert len(result.files) == 1
    finally:
        runner.close()
        server.stop()
