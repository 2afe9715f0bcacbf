"""An inbox item honours the cancel.json its caller leaves in its outbox folder: a running item's
prompt is stopped and the item ends with a `cancelled` result.json and no outputs. The item runs
through `run_item` on the shared runner, as a draining task runs it; RunPod's envelope, dropped in
the inbox, runs as our document does."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from job.engine.runner import Runner
from job.items.outbox import CANCEL, RESULT, STATUS
from job.items.work_item import Disposition, ItemOutcome, run_item
from job.settings import Settings
from tests.support.comfy import empty_image_workflow, slow_workflow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.comfyui


def _drop(folder: Path, name: str, request: dict[str, Any]) -> tuple[str, Path]:
    """A local request document and its outbox folder: what `worker-comfyui job wf.json` runs."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(request))
    return str(path), folder / name


def _state(outbox: Path) -> str | None:
    try:
        return str(json.loads((outbox / STATUS).read_text()).get("state"))
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_a_running_item_is_stopped_by_cancel_json_and_records_cancelled(
    runner: Runner, comfy_settings_session: Settings, tmp_path: Path
) -> None:
    settings = comfy_settings_session.model_copy(update={"cancel_poll_s": 0.1})
    request_uri, outbox = _drop(tmp_path, "long", {"workflow": slow_workflow(blurs=60, prefix="cancelled-run")})
    outcomes: list[ItemOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.append(run_item(settings, request_uri, f"{outbox}/", runner=runner)), daemon=True
    )
    worker.start()

    wait_for(lambda: _state(outbox) == "running", timeout_s=120, what="the item's status.json to say running")
    (outbox / CANCEL).write_text(json.dumps({"cancelled_at": "now"}))
    worker.join(timeout=240)

    assert not worker.is_alive(), "the cancelled item never ended"
    (outcome,) = outcomes
    assert outcome.disposition is Disposition.FAILED  # finished: not retried
    result = json.loads((outbox / RESULT).read_text())
    assert result["status"] == "error"
    assert result["error"]["type"] == "cancelled"
    assert "while it ran" in result["error"]["message"]
    assert sorted(path.name for path in outbox.iterdir()) == [CANCEL, RESULT, STATUS]  # no outputs kept


def test_without_cancel_json_an_item_runs_and_runpods_envelope_runs_from_the_inbox(
    runner: Runner, comfy_settings_session: Settings, tmp_path: Path
) -> None:
    envelope = {
        "input": {"workflow": empty_image_workflow(size=8, prefix="from-runpod"), "id": "rp-inbox"},
        "policy": {"executionTimeout": 120_000},
    }
    request_uri, outbox = _drop(tmp_path, "runpod", envelope)

    outcome = run_item(comfy_settings_session, request_uri, f"{outbox}/", runner=runner)

    assert outcome.disposition is Disposition.SUCCEEDED
    result = json.loads((outbox / RESULT).read_text())
    assert result["status"] == "success" and result["id"] == "rp-inbox"
    (image,) = result["images"]
    assert Path(image["uri"]).read_bytes().startswith(b"\x89PNG")
