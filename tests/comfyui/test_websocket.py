"""The runner's one websocket: shared by every run, trusted only when it saw a run whole."""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from job.comfyui.process import ComfyServer
from job.engine.runner import Runner
from tests.support.comfy import comfy_settings, empty_image_workflow
from tests.support.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the session's or the test's own


def _attached_runner(
    comfy_server: ComfyServer, proxy: CuttableProxy, tmp_path: Path, reconnects: int = 1
) -> tuple[ComfyServer, Runner]:
    # A safety-net poll longer than these runs: any /history read means the socket was not trusted.
    settings = comfy_settings(
        tmp_path, comfyui_url=proxy.url, websocket_reconnect_attempts=reconnects, history_poll_s=20.0
    )
    server = ComfyServer(settings.comfyui()).start()
    return server, Runner(server)


def test_runs_share_one_socket_and_take_their_result_from_it(comfy_server: ComfyServer, tmp_path: Path) -> None:
    with CuttableProxy(comfy_server.config.port) as proxy:
        server, runner = _attached_runner(comfy_server, proxy, tmp_path)
        try:
            results = [runner.run(empty_image_workflow(size=8, color=color), timeout_s=30) for color in (1, 2, 3)]
        finally:
            runner.close()
            server.stop()

    assert proxy.websockets_opened == 1, "one handshake for the runner, not one per run"
    assert [len(result.files) for result in results] == [1, 1, 1]
    history_reads = [path for path in proxy.paths if path.startswith("GET /history")]
    assert history_reads == [], "the socket saw every run whole, so /history was never needed"
    assert sum(path.startswith("POST /prompt") for path in proxy.paths) == 3
    class_reads = sorted(path for path in proxy.paths if path.startswith("GET /object_info"))
    assert class_reads == ["GET /object_info/EmptyImage", "GET /object_info/SaveImage"], (
        "which classes are outputs is asked once per class, not once per run"
    )
    assert all(result.timings.execution_s > 0 for result in results)


def test_a_run_ends_at_its_last_output_without_waiting_for_comfyuis_end_event(runner: Runner) -> None:
    """ComfyUI sends `execution_success` only after its post-prompt garbage collection (~0.5 s on a
    process's first prompt or after 10 s idle); the run is over once every output node reported."""
    states: list[str] = []
    workflow = {
        **empty_image_workflow(size=8, color=9, prefix="first"),
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "second"}},
    }
    result = runner.run(workflow, timeout_s=30, on_progress=lambda progress: states.append(progress.state))

    assert sorted(output.filename.split("_")[0] for output in result.files) == ["first", "second"]
    assert "running" in states
    assert "finished" not in states, "the end event was never waited for: both outputs had reported"


def test_a_run_after_the_socket_gave_up_reconnects_and_polls_what_it_missed(
    comfy_server: ComfyServer, tmp_path: Path
) -> None:
    with CuttableProxy(comfy_server.config.port) as proxy:
        server, runner = _attached_runner(comfy_server, proxy, tmp_path, reconnects=0)
        try:
            runner.run(empty_image_workflow(size=8, color=4), timeout_s=30)
            proxy.cut_websockets()  # with no retries configured, the hub gives up at once
            during_outage = runner.run(empty_image_workflow(size=8, color=5), timeout_s=30)
            proxy.allow_websockets()
            after = runner.run(empty_image_workflow(size=8, color=6), timeout_s=30)
        finally:
            runner.close()
            server.stop()

    assert len(during_outage.files) == 1 and len(after.files) == 1
    assert during_outage.timings.total_s < 10, "without a socket, /history is polled fast, not every 20 s"
    assert proxy.websockets_opened == 2, "the run after the outage opened a fresh socket"
    history_reads = [path for path in proxy.paths if path.startswith("GET /history")]
    assert history_reads and all(during_outage.prompt_id in path for path in history_reads), (
        "only the run that could not trust the socket read /history"
    )


def test_concurrent_runs_on_one_runner_each_get_their_own_outputs(runner: Runner) -> None:
    colors = {index: (index * 40, 255 - index * 40, 7) for index in range(4)}
    results: dict[int, bytes] = {}

    def run(index: int) -> None:
        red, green, blue = colors[index]
        workflow = empty_image_workflow(size=8, color=(red << 16) | (green << 8) | blue, prefix=f"concurrent{index}")
        (output,) = runner.run(workflow, timeout_s=60).files
        results[index] = output.data

    threads = [threading.Thread(target=run, args=(index,)) for index in colors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    assert sorted(results) == sorted(colors)
    for index, data in results.items():
        assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0)) == colors[index]


def test_a_managed_comfyui_outputs_are_read_from_its_own_output_folder(runner: Runner, comfy_base: Path) -> None:
    assert runner.server.folders is not None
    assert runner.server.folders["output"] == comfy_base.resolve() / "output"
    keeping = Runner(runner.server, config=replace(runner.server.config, keep_outputs=True))  # KEEP_OUTPUTS: compare
    try:
        (output,) = keeping.run(empty_image_workflow(size=8, prefix="ondisk"), timeout_s=30).files
    finally:
        keeping.close()
    assert (comfy_base / "output" / output.relpath).read_bytes() == output.data
