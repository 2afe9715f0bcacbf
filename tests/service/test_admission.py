"""Under load: one run at a time, 429 past MAX_QUEUE_DEPTH, deadlines kept, abandoned runs stopped."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from job.engine.runner import Runner
from tests.service.conftest import MakeService, Service
from tests.support.comfy import empty_image_workflow, slow_workflow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.comfyui


def queued(service: Service) -> int:
    return int(service.http.get("/").json()["queued"])


def running_prompts(runner: Runner) -> frozenset[str]:
    return runner.client.queue().running


@pytest.mark.slow
def test_requests_past_the_queue_depth_get_429_with_retry_after(make_service: MakeService, runner: Runner) -> None:
    with make_service(max_queue_depth=2) as service, ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(service.predict, {"workflow": slow_workflow(prefix="svc-429"), "timeout_s": 4})
        wait_for(lambda: bool(running_prompts(runner)), timeout_s=30, what="the slow prompt to run")
        waiting = pool.submit(service.predict, {"workflow": empty_image_workflow(size=8, color=0x429429)})
        wait_for(lambda: queued(service) == 2, timeout_s=30, what="the second request to wait")

        started = time.monotonic()
        refused = service.predict({"workflow": empty_image_workflow(size=8, color=0x429430)})
        assert time.monotonic() - started < 2.0  # refused at once, not queued

        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "queue_full"
        assert "MAX_QUEUE_DEPTH" in refused.json()["error"]["message"]
        assert slow.result().status_code == 504
        assert waiting.result().status_code == 200  # the one that waited ran after the slow one
        assert queued(service) == 0


@pytest.mark.slow
def test_timeout_gives_504_and_the_next_request_still_succeeds(service: Service, runner: Runner) -> None:
    started = time.monotonic()
    response = service.predict({"workflow": slow_workflow(prefix="svc-504"), "timeout_s": 1.5})

    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout"
    assert time.monotonic() - started < 20
    # The answer came at the deadline; the blur under way then ends in the background, the instance
    # saying meanwhile that it is busy (tests/service/test_deadline_holds.py).
    wait_for(lambda: service.http.get("/healthz").status_code == 200, timeout_s=30, what="ComfyUI to be free")
    assert not running_prompts(runner)  # ComfyUI was interrupted, not left busy

    after = service.predict({"workflow": empty_image_workflow(size=8, color=0x504504)})
    assert after.status_code == 200, after.text


@pytest.mark.slow
def test_waiting_past_the_deadline_gives_504_without_hanging(make_service: MakeService, runner: Runner) -> None:
    with make_service(max_queue_depth=3) as service, ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(service.predict, {"workflow": slow_workflow(prefix="svc-wait"), "timeout_s": 5})
        wait_for(lambda: bool(running_prompts(runner)), timeout_s=30, what="the slow prompt to run")

        started = time.monotonic()
        waited = service.predict({"workflow": empty_image_workflow(size=8, color=0x123123), "timeout_s": 1})

        assert waited.status_code == 504
        assert "waited for the runs ahead" in waited.json()["error"]["message"]
        assert time.monotonic() - started < 3
        slow.result()
        # Its blur, under way at its deadline, ends in the background; the instance is busy until then.
        wait_for(lambda: service.http.get("/healthz").status_code == 200, timeout_s=30, what="ComfyUI to be free")


@pytest.mark.slow
def test_client_disconnect_cancels_its_prompt(service: Service, runner: Runner) -> None:
    def send() -> httpx.Response:
        with httpx.Client(base_url=service.url, timeout=httpx.Timeout(30.0, read=2.0)) as impatient:
            return impatient.post("/predict", json={"workflow": slow_workflow(prefix="svc-gone"), "timeout_s": 120})

    with ThreadPoolExecutor(max_workers=1) as pool:
        call: Future[httpx.Response] = pool.submit(send)
        wait_for(lambda: bool(running_prompts(runner)), timeout_s=30, what="the prompt to run")
        [prompt_id] = running_prompts(runner)
        with pytest.raises(httpx.ReadTimeout):
            call.result()  # the client gives up and closes its connection

    gone_at = time.monotonic()
    wait_for(lambda: not runner.client.queue().holds(prompt_id), timeout_s=15, what="the prompt to stop")
    assert time.monotonic() - gone_at < 15
    entry = runner.client.history(prompt_id) or {}
    messages = [name for name, _ in (entry.get("status") or {}).get("messages", [])]
    assert "execution_interrupted" in messages
    wait_for(lambda: queued(service) == 0, timeout_s=5, what="the service to let go of the request")

    after = service.predict({"workflow": empty_image_workflow(size=8, color=0x0DC0DC)})
    assert after.status_code == 200


def test_runs_never_overlap_on_comfyui(make_service: MakeService, runner: Runner) -> None:
    overlap = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            state = runner.client.queue()
            if len(state.running) + len(state.pending) > 1:
                overlap.set()
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    with make_service(max_queue_depth=4) as service, ThreadPoolExecutor(max_workers=4) as pool:
        watcher.start()
        bodies = [
            {"workflow": empty_image_workflow(size=64, color=0x111100 + i, prefix="svc-serial")} for i in range(4)
        ]
        results = list(pool.map(service.predict, bodies))
        stop.set()
        watcher.join()

    assert [r.status_code for r in results] == [200, 200, 200, 200]
    assert not overlap.is_set()
