"""A deadline holds under /predict even when ComfyUI cannot stop the node it runs: the 504 comes at
the deadline, the instance then refuses new work with a retryable 503 and says why in /healthz and
GET /, and once ComfyUI is done it serves again, with the late prompt's files deleted."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from job.engine.runner import Runner
from tests.service.conftest import Service
from tests.support.comfy import comfy_files, empty_image_workflow
from tests.support.stubborn import stubborn_workflow
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

TIMEOUT_S = 1.5
SLACK_S = 1.5  # a behaviour check, not a benchmark: "at the deadline" loosely, far below the node's seconds


def test_a_deadline_holds_while_comfyui_finishes_a_node_it_cannot_interrupt(
    service: Service, runner: Runner, comfy_base: Path
) -> None:
    before = comfy_files(comfy_base)
    tag = uuid.uuid4().hex[:8]

    sent = time.monotonic()
    response = service.predict({"workflow": stubborn_workflow(tag), "timeout_s": TIMEOUT_S})
    answered_after = time.monotonic() - sent

    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["type"] == "timeout"
    assert "deadline of 1.5 s" in error["message"]
    assert answered_after < TIMEOUT_S + SLACK_S, f"answered {answered_after:.2f} s after it was sent"

    # ComfyUI still blurs: the instance says so and refuses new work, retryably.
    assert runner.client.queue().running, "the blur outlives the answer (else this test proves nothing)"
    health = service.http.get("/healthz")
    assert health.status_code == 503
    assert "still finishing a run that passed its deadline of 1.5 s" in health.json()["detail"]
    info = service.http.get("/").json()
    assert info["ready"] is False
    assert info["detail"] == health.json()["detail"]
    refused = service.predict({"workflow": empty_image_workflow(size=8, color=0x503503)})
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "comfyui_unavailable"
    assert "still finishing a run that passed its deadline" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    written = comfy_files(comfy_base) - before
    assert any(f"early-{tag}" in path for path in written), "the prompt wrote a file before its deadline"

    wait_for(lambda: service.http.get("/healthz").status_code == 200, timeout_s=60, what="ComfyUI to be free")
    assert comfy_files(comfy_base) == before, "what the late prompt wrote is deleted once it ends"
    after = service.predict({"workflow": empty_image_workflow(size=8, color=0x200200)})
    assert after.status_code == 200, after.text
    assert [entry["node_id"] for entry in after.json()["images"]] == ["2"], "nothing of the late prompt leaks in"
