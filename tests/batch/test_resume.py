"""A task killed mid-way and run again resumes: the items done before the kill are not run again,
the rest are, and the rerun boots its ComfyUI once for all of them. `batch status` counts both
states from the bucket."""

from __future__ import annotations

import json
import os
import signal

import pytest

from job.cli import build_parser
from job.commands.batch import batch_status_command
from job.settings import load_settings
from tests.batch.conftest import BOOT_LINE, log_messages, noise_workflow, task_env
from tests.items.conftest import own_comfyui_env, start_job
from tests.support.waiting import wait_for


def slower_workflow():
    """The noise graph behind a blur: long enough per item to kill a task between items."""
    workflow = noise_workflow(size=256)
    workflow["4"] = {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 15, "sigma": 4.0}}
    workflow["2"]["inputs"]["image"] = ["4", 0]
    return workflow


def status_counts(prefix: str, capsys) -> dict:
    """`worker-comfyui batch status PREFIX --json`, in this process."""
    args = build_parser().parse_args(["batch", "status", prefix, "--json"])
    capsys.readouterr()  # drop what came before (the task logs run_tasks prints)
    assert batch_status_command(args, load_settings(google_cloud_project="local-project")) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.comfyui
@pytest.mark.slow
def test_task_killed_mid_way_resumes_without_redoing_items_on_one_boot(
    gcs, batch_bucket, attached, run_tasks, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)  # for `batch status` in this process
    spec = {"id": "resumed", "workflow": slower_workflow(), "grid": {"2": {"seed": {"random": 12}}}}
    spec["prefix"] = batch_bucket.prefix
    uri = batch_bucket.drop_spec(spec)
    env = task_env(gcs, batch_uri=uri, cloud_run_execution="resumed-x1")

    killed = start_job({**env, **attached}, tmp_path / "killed.log")
    try:
        wait_for(lambda: len(batch_bucket.results()) >= 3, timeout_s=90, what="three items to finish")
        os.killpg(killed.pid, signal.SIGKILL)  # a lost container: no cleanup, no marker
        killed.wait(timeout=10)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait()
    before = {item_id: batch_bucket.blob(f"{item_id}/result.json").generation for item_id in batch_bucket.results()}
    assert 3 <= len(before) < 12, "the task was not killed mid-way"
    assert batch_bucket.blob("summary.json") is None
    counts = status_counts(batch_bucket.prefix, capsys)
    assert (counts["done"], counts["pending"], counts["items"]) == (len(before), 12 - len(before), 12)

    own = own_comfyui_env(tmp_path / "own-base")
    [(code, output)] = run_tasks({**env, **own, "CLOUD_RUN_TASK_ATTEMPT": "1"}, 1, timeout=240)

    assert code == 0
    boots = [message for message in log_messages(output) if BOOT_LINE in message]
    assert len(boots) == 1 and f"{BOOT_LINE}1)" in boots[0], boots
    results = batch_bucket.results()
    assert sorted(results) == [f"{index:04d}" for index in range(12)]
    assert all(result["status"] == "success" for result in results.values())
    for item_id, generation in before.items():  # done before the kill: untouched
        assert batch_bucket.blob(f"{item_id}/result.json").generation == generation
        assert results[item_id]["execution"]["attempt"] == 0
        assert len(batch_bucket.files(item_id)) == 1
    rerun = {item_id for item_id, result in results.items() if result["execution"]["attempt"] == 1}
    assert rerun == set(results) - set(before)
    for result in results.values():  # the listed output is there, whole
        [image] = result["images"]
        assert batch_bucket.blob(f"{result['batch']['item']}/{image['filename']}").size == image["size"]

    summary = batch_bucket.json("summary.json")
    assert summary["counts"] == {"items": 12, "succeeded": 12, "failed": 0}
    [task] = summary["tasks"]
    assert (task["attempt"], task["skipped"], task["boots"]) == (1, len(before), 1)
    assert task["outcomes"] == {"succeeded": 12 - len(before)}
    assert status_counts(batch_bucket.prefix, capsys)["done"] == 12
