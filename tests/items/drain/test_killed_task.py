"""A task killed mid-drain: the item it held is retried once its lease lapses, and nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.support.comfy import slow_workflow
from tests.support.inbox_pipeline import InboxPipeline


def _held_by_a_task(line: InboxPipeline) -> tuple[str, dict] | None:
    """(object name, claim) of a drained item whose claim a task holds right now."""
    for blob in line.inbox.list_blobs(prefix="_claims/"):
        if (blob.metadata or {}).get("state") == "claimed" and ".launch-gate" not in blob.name:
            claim = json.loads(blob.download_as_bytes())
            if claim["by"].startswith("task "):
                return blob.name.removeprefix("_claims/").rpartition("/")[0], claim
    return None


def _slow(index: int) -> dict:
    """About a second of blurs, each item on its own colour so ComfyUI's cache cannot skip the work."""
    workflow = slow_workflow(blurs=6, size=256, prefix=f"slow{index}")
    workflow["1"]["inputs"]["color"] = index
    return workflow


@pytest.mark.slow
def test_item_held_by_a_killed_task_is_taken_over_after_its_lease_and_every_item_finishes(pipeline):
    line: InboxPipeline = pipeline(max_executions=1, drain_lease_s=4)
    names = [line.drop(0)] + [line.drop(i, _slow(i)) for i in range(1, 6)]

    deadline = time.monotonic() + 90
    while (held := _held_by_a_task(line)) is None:
        assert time.monotonic() < deadline, f"no task ever held a drained item:\n{line.tail()}"
        time.sleep(0.05)
    [victim] = line.run_api.executions()
    os.killpg(victim.processes[0].pid, signal.SIGKILL)  # no `finally` runs: the claim stays held until it lapses
    killed_item, held_claim = held

    results = line.wait_results(names, timeout=120)
    executions = line.wait_idle(timeout=60)

    assert victim.exit_codes == {0: -signal.SIGKILL}
    assert held_claim["by"] == f"task {victim.name.rsplit('/', 1)[-1]}/0"
    retried = results[killed_item]
    assert retried["status"] == "success"
    assert retried["execution"]["name"] != victim.name.rsplit("/", 1)[-1]
    assert retried["execution"]["claim_attempt"] == held_claim["attempt"] + 1  # the next holder ran it
    claim = line.claim(killed_item)
    assert claim["state"] == "done" and claim["attempt"] == held_claim["attempt"] + 1
    assert all(result["status"] == "success" for result in results.values())
    for name, result in results.items():  # every listed output exists; a partial first try lists nothing
        [image] = result["images"]
        assert line.outbox.get_blob(image["uri"].removeprefix("gs://outbox/")) is not None, name
    assert len(executions) == 2
