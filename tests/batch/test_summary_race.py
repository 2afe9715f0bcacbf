"""Tasks finishing together: whichever writes last, summary.json ends up with every task's marker,
on GCS (generation preconditions on the real emulator) and in a local folder (flock)."""

from __future__ import annotations

import json
import threading

import pytest

from job.batch.folder import SUMMARY, TASKS
from job.batch.summary import finish_batch
from job.batch.task import ensure_manifest, prepare_batch
from job.items.outbox import RESULT, utc_now
from job.settings import Settings
from job.storage import Storages
from tests.batch.conftest import noise_workflow

TASK_COUNT = 8


@pytest.mark.parametrize("where", ["gcs", "local"])
def test_tasks_finishing_at_once_leave_one_summary_with_every_marker(where, tmp_path, gcs, batch_bucket, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    prefix = batch_bucket.prefix if where == "gcs" else f"{tmp_path}/out/"
    spec = tmp_path / "race.batch.json"
    spec.write_text(
        json.dumps({"workflow": noise_workflow(), "grid": {"2": {"seed": {"random": 16}}}, "prefix": prefix})
    )
    prepared = prepare_batch(str(spec), Storages("local-project"), Settings(outbox_uri=None))
    ensure_manifest(prepared)
    folder = prepared.folder
    for item in prepared.items:  # every item done; one of them failed
        status = "error" if item.index == 5 else "success"
        result = {"status": status, "finished_at": utc_now(), "timings": {"job_s": 1.0, "execution_s": 0.5}}
        if status == "error":
            result["error"] = {"type": "execution_error", "message": "a node raised"}
        folder.write_json(f"{item.id}/{RESULT}", result)
    start = threading.Barrier(TASK_COUNT)

    def task(index: int) -> None:
        start.wait()
        folder.write_json(f"{TASKS}{index}.json", {"task_index": index, "attempt": 0, "finished_at": utc_now()})
        finish_batch(prepared.batch, prepared.items, folder, by={"task_index": index})

    threads = [threading.Thread(target=task, args=(index,)) for index in range(TASK_COUNT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    summary = folder.read_json(SUMMARY)[0]
    assert summary is not None
    assert [marker["task_index"] for marker in summary["tasks"]] == list(range(TASK_COUNT))
    assert summary["counts"] == {"items": 16, "succeeded": 15, "failed": 1}
    assert summary["status"] == "completed_with_errors"
    [failed] = summary["failed"]
    assert (failed["item"], failed["error"]["type"]) == ("0005", "execution_error")
    assert failed["result"] == f"{prefix}0005/result.json"
    assert summary["timings"]["execution_s"] == {"total": 8.0, "mean": 0.5, "max": 0.5}


def test_no_summary_while_an_item_has_no_result(tmp_path):
    spec = tmp_path / "open.batch.json"
    spec.write_text(json.dumps({"workflow": noise_workflow(), "grid": {"2": {"seed": [1, 2]}}}))
    prepared = prepare_batch(str(spec), Storages(), Settings(outbox_uri=None))
    prepared.folder.write_json(f"0000/{RESULT}", {"status": "success"})

    assert finish_batch(prepared.batch, prepared.items, prepared.folder, by={}) is None
    assert prepared.folder.read_json(SUMMARY) == (None, 0)
