"""The job's path (`run_item` on a warm runner, as a draining task runs its items): a preview-only
graph lands its previews in the outbox, and an item past its deadline is finished at the deadline
while ComfyUI still runs a node it cannot interrupt; the next item on that ComfyUI waits for it."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from job.engine.runner import Runner
from job.items.work_item import Disposition, run_item
from job.settings import Settings
from tests.support.comfy import comfy_files, empty_image_workflow
from tests.support.stubborn import stubborn_workflow

pytestmark = pytest.mark.comfyui


def _drop(folder: Path, name: str, request: dict[str, Any]) -> tuple[str, str]:
    """A local request document and its outbox folder: what `worker-comfyui job wf.json` runs."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(request))
    return str(path), f"{folder / name}/"


def _result(outbox: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((Path(outbox) / "result.json").read_text())
    return loaded


def test_a_preview_only_item_lands_its_previews_in_the_outbox(
    runner: Runner, comfy_settings_session: Settings, tmp_path: Path
) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0xABCDEF}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    request_uri, outbox = _drop(tmp_path, "preview", {"workflow": workflow})

    outcome = run_item(comfy_settings_session, request_uri, outbox, runner=runner)

    assert outcome.disposition is Disposition.SUCCEEDED
    (entry,) = _result(outbox)["images"]
    assert (entry["node_id"], entry["type"]) == ("2", "temp")
    assert Path(entry["uri"]).read_bytes().startswith(b"\x89PNG"), "the preview itself is in the outbox"


@pytest.mark.slow
def test_an_item_past_its_deadline_finishes_at_it_and_the_next_item_waits(
    runner: Runner, comfy_settings_session: Settings, comfy_base: Path, tmp_path: Path
) -> None:
    before = comfy_files(comfy_base)
    tag = uuid.uuid4().hex[:8]
    late_uri, late_outbox = _drop(tmp_path, "late", {"workflow": stubborn_workflow(tag), "timeout_s": 1.5})
    next_uri, next_outbox = _drop(tmp_path, "next", {"workflow": empty_image_workflow(size=8, prefix=f"next-{tag}")})

    started = time.monotonic()
    late = run_item(comfy_settings_session, late_uri, late_outbox, runner=runner)
    finished_after = time.monotonic() - started

    assert late.disposition is Disposition.FAILED
    error = _result(late_outbox)["error"]
    assert error["type"] == "timeout"
    assert "deadline of 1.5 s" in error["message"]
    assert finished_after < 1.5 + 1.5, f"finished {finished_after:.2f} s after it started"
    still_running = runner.overruns.current()
    assert still_running is not None, "ComfyUI still blurs (else this test proves nothing)"

    hasty_uri, hasty_outbox = _drop(tmp_path, "hasty", {"workflow": empty_image_workflow(size=8), "timeout_s": 0.5})
    hasty = run_item(comfy_settings_session, hasty_uri, hasty_outbox, runner=runner)
    assert hasty.disposition is Disposition.FAILED, "its wait is bounded by its own deadline"
    waited = _result(hasty_outbox)["error"]
    assert waited["type"] == "timeout"
    assert "still finishing a run that passed its deadline of 1.5 s" in waited["message"]
    assert runner.overruns.current() is not None

    following = run_item(comfy_settings_session, next_uri, next_outbox, runner=runner)

    assert following.disposition is Disposition.SUCCEEDED
    assert not runner.client.queue().holds(still_running.prompt_id)
    assert runner.overruns.current() is None
    result = _result(next_outbox)
    assert [entry["node_id"] for entry in result["images"]] == ["2"]
    assert result["images"][0]["filename"].startswith(f"next-{tag}"), "its own outputs, nothing of the late prompt"
    assert comfy_files(comfy_base) == before, "the late prompt's files are deleted once it ended"
