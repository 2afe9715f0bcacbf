"""The trigger keeps to MAX_EXECUTIONS (Admin API executions list) and leaves the rest pending, unclaimed.

No job runs here: the stand-in only records runs, and `complete()` ends an execution.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from job.devstack.gcs_emulator import GcsEmulator
from job.devstack.run_api import DEFAULT_JOB, RunApiStandin
from tests.support.gcs_events import finalized_event
from tests.trigger.conftest import Function
from trigger.claims import ClaimState, ClaimStore
from trigger.objects import StorageObject


@pytest.fixture
def run_api() -> Any:
    with RunApiStandin(jobs=[DEFAULT_JOB]) as api:
        yield api


@pytest.fixture
def function(gcs: GcsEmulator, run_api: RunApiStandin, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The function with MAX_EXECUTIONS=1; a test may set it again before its first delivery."""
    for name, value in {
        "STORAGE_EMULATOR_HOST": gcs.url, "RUN_API_ENDPOINT": run_api.url, "MAX_EXECUTIONS": "1",
        "RUN_JOB_TIMEOUT_S": "5", "CLAIM_LEASE_S": "30", "CLAIM_WAIT_S": "5", "OUTBOX_BUCKET": "outbox",
        "FUNCTION_TARGET": "on_inbox_object", "FUNCTION_SIGNATURE_TYPE": "cloudevent",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    return Function()


def _drop(inbox: Any, name: str) -> Any:
    blob = inbox.blob(name)
    blob.upload_from_string(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}))
    return finalized_event(inbox.name, name, blob.generation, blob.size)


def _claim(inbox: Any, event: Any) -> dict[str, Any] | None:
    blob = inbox.get_blob(f"_claims/{event.data['name']}/{event.data['generation']}")
    return None if blob is None else json.loads(blob.download_as_bytes())


def test_drop_at_max_executions_answers_5xx_unclaimed_and_starts_once_there_is_room(function, inbox, run_api):
    first, second = _drop(inbox, "a.json"), _drop(inbox, "b.json")

    assert function.deliver(first).status_code == 200
    assert function.deliver(second).status_code == 500  # one execution is active: B waits, pending
    assert len(run_api.runs) == 1
    assert _claim(inbox, second) is None  # nothing held: a draining task may take it at once

    [execution] = run_api.executions()
    run_api.complete(execution.name)
    assert function.deliver(second).status_code == 200  # Eventarc's redelivery finds room
    assert len(run_api.runs) == 2
    assert _claim(inbox, second)["state"] == "started"


@pytest.mark.slow
def test_concurrent_drops_start_exactly_max_executions(function, inbox, run_api, monkeypatch):
    monkeypatch.setenv("MAX_EXECUTIONS", "3")
    events = [_drop(inbox, f"burst/{index:02d}.json") for index in range(12)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda event: function.deliver(event).status_code, events))

    assert sorted(statuses) == [200] * 3 + [500] * 9
    assert len(run_api.runs) == 3 and len(run_api.executions()) == 3
    for event, status in zip(events, statuses, strict=True):
        claim = _claim(inbox, event)
        if status == 200:
            assert claim is not None and claim["state"] == "started"
        else:  # never claimed, or given back at the launch gate: either way a task may take it
            assert claim is None or claim["state"] == "released"


def test_item_a_task_is_running_is_redelivered_at_once_and_acknowledged_when_done(function, inbox, run_api, gcs):
    event = _drop(inbox, "drained.json")
    obj = StorageObject(inbox.name, "drained.json", int(event.data["generation"]))
    claims = ClaimStore(gcs.client(), "_claims/", lease_s=30, wait_s=0)
    lease = claims.acquire(obj, by="task worker-comfyui-abcde/0")

    started = time.monotonic()
    assert function.deliver(event).status_code == 500
    assert time.monotonic() - started < 2  # no waiting out CLAIM_WAIT_S for a task that runs for minutes
    claims.settle(lease, ClaimState.DONE, execution="worker-comfyui-abcde")
    assert function.deliver(event).status_code == 200
    assert run_api.runs == []


def test_item_whose_draining_task_died_is_started_after_its_lease_lapses(function, inbox, run_api, gcs):
    event = _drop(inbox, "orphan.json")
    obj = StorageObject(inbox.name, "orphan.json", int(event.data["generation"]))
    ClaimStore(gcs.client(), "_claims/", lease_s=0.2, wait_s=0).acquire(obj, by="task worker-comfyui-dead0/0")
    time.sleep(0.3)

    assert function.deliver(event).status_code == 200
    assert len(run_api.runs) == 1
    claim = _claim(inbox, event)
    assert claim["state"] == "started" and claim["attempt"] == 2
