"""Infrastructure failures exit non-zero so Cloud Run retries the task, and a retry is safe: a job
killed mid-run and run again (CLOUD_RUN_TASK_ATTEMPT=1) leaves one complete result whose every
listed output is whole. The killed job boots a ComfyUI of its own; the retry attaches to the
session's."""

from __future__ import annotations

import io
import os
import signal

import httpx
import pytest
from PIL import Image

from tests.items.conftest import job_env, own_comfyui_env, start_job
from tests.support.comfy import slow_workflow
from tests.support.waiting import wait_for


def under_way(status):
    """status.json when it says a blur past the third is running, else None."""
    if status and status["state"] == "running" and int((status["progress"] or {}).get("node") or 0) >= 4:
        return status
    return None


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/system_stats", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.comfyui
@pytest.mark.slow
def test_job_killed_mid_run_then_retried_leaves_one_complete_result(gcs, drop, run_job, attached, tmp_path):
    item = drop({"workflow": slow_workflow(blurs=12, size=512, prefix="retried")})
    own = own_comfyui_env(tmp_path / "base")
    env = job_env(gcs, request_uri=item.request_uri, outbox_uri=item.outbox_uri, **own)
    process = start_job(env, tmp_path / "killed.log")
    try:
        running = wait_for(
            lambda: under_way(item.status()),
            timeout_s=180,
            what="status.json to show the run under way",
            interval_s=0.1,
        )
        os.kill(process.pid, signal.SIGKILL)  # what a lost container looks like: no cleanup at all
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    comfyui = f"http://127.0.0.1:{own['COMFYUI_PORT']}"
    wait_for(lambda: not answers(comfyui), timeout_s=20, what="the killed job's ComfyUI to go away with it")
    assert running["source"] == item.request_uri
    assert running["progress"]["nodes_total"] == 14
    assert running["progress"]["class_type"] == "ImageBlur"
    assert item.result() is None, "a killed job writes no result"

    code, log = run_job(
        job_env(gcs, request_uri=item.request_uri, outbox_uri=item.outbox_uri, cloud_run_task_attempt=1, **attached)
    )

    assert code == 0, log
    result = item.result()
    assert result["status"] == "success"
    assert result["execution"]["attempt"] == 1
    [image] = result["images"]
    data = item.read(image["uri"])
    assert len(data) == image["size"]
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.size == (512, 512)
    listed = image["uri"].removeprefix(item.outbox_uri)
    assert item.outbox_names() == sorted([listed, "result.json", "status.json"]), "no stray files in the outbox"
    assert item.status()["state"] == "succeeded"


@pytest.mark.comfyui
@pytest.mark.slow
def test_comfyui_that_cannot_start_is_retried_and_the_last_attempt_records_why(gcs, drop, run_job, tmp_path):
    item = drop({"workflow": slow_workflow(blurs=1, size=8)})
    broken = own_comfyui_env(tmp_path / "base")
    broken["COMFYUI_ARGS"] += " --no-such-flag"
    base = {"request_uri": item.request_uri, "outbox_uri": item.outbox_uri, "job_max_retries": 2, **broken}

    code, log = run_job(job_env(gcs, cloud_run_task_attempt=0, **base))

    assert code == 1, log
    assert item.result() is None, "a retryable failure leaves the item open for the retry"
    status = item.status()
    assert status["state"] == "retrying"
    assert status["error"]["type"] == "comfyui_unavailable"

    code, log = run_job(job_env(gcs, cloud_run_task_attempt=2, **base))

    assert code == 1, log
    result = item.result()
    assert result["status"] == "error"
    assert result["error"]["type"] == "comfyui_unavailable"
    assert "--no-such-flag" in result["error"]["message"], "the message carries ComfyUI's last log lines"
    assert result["execution"]["attempt"] == 2
    assert item.status()["state"] == "gave_up"
