"""Three tasks of one execution share a 36-item grid: every item runs once, in the task whose share
it is, and the task that finishes last writes a summary.json that adds up."""

from __future__ import annotations

import pytest

from job.batch.plan import random_seed
from tests.batch.conftest import BOOT_LINE, noise_workflow, task_env

COLORS = [0x202020, 0x808080, 0xE0E0E0]


@pytest.mark.comfyui
@pytest.mark.slow
def test_three_tasks_share_a_36_item_grid_and_run_each_item_once(gcs, batch_bucket, attached, run_tasks):
    spec = {
        "id": "shared-grid",
        "workflow": noise_workflow(),
        "grid": {"1": {"color": COLORS}, "2": {"seed": {"random": 12}}},
        "prefix": batch_bucket.prefix,
        "tasks": 3,
    }
    uri = batch_bucket.drop_spec(spec)
    env = task_env(gcs, batch_uri=uri, cloud_run_execution="shared-grid-x1", **attached)

    outcomes = run_tasks(env, 3)

    assert [code for code, _ in outcomes] == [0, 0, 0]
    results = batch_bucket.results()
    assert sorted(results) == [f"{index:04d}" for index in range(36)]
    for item_id, result in results.items():
        index = int(item_id)
        assert result["status"] == "success", result
        assert result["source"] == uri
        assert result["execution"]["task_index"] == index // 12  # contiguous shares of 12
        assert result["execution"]["task_count"] == 3
        seed = random_seed("shared-grid", index, "2", "seed")
        assert result["batch"] == {
            "id": "shared-grid",
            "item": item_id,
            "index": index,
            "overrides": {"1": {"color": COLORS[index // 12]}, "2": {"seed": seed}},
            "seeds": {"2.seed": seed},
        }
        # A second run of an item would leave a second numbered file in its folder.
        [image] = result["images"]
        assert batch_bucket.files(item_id) == [image["filename"]]
        assert image["uri"] == f"{batch_bucket.prefix}{item_id}/{image['filename']}"
    assert len({result["prompt_id"] for result in results.values()}) == 36

    summary = batch_bucket.json("summary.json")
    assert summary is not None
    assert summary["batch"] == "shared-grid"
    assert summary["status"] == "succeeded"
    assert summary["counts"] == {"items": 36, "succeeded": 36, "failed": 0}
    assert summary["failed"] == []
    assert [task["task_index"] for task in summary["tasks"]] == [0, 1, 2]
    for task in summary["tasks"]:
        assert task["share"] == 12 and task["skipped"] == 0
        assert task["outcomes"] == {"succeeded": 12}
        assert task["boots"] == 0  # attached to the session's ComfyUI
    assert summary["timings"]["execution_s"]["total"] > 0
    assert summary["written_by"]["task_index"] in (0, 1, 2)
    manifest = batch_bucket.json("batch.json")
    assert manifest is not None and manifest["count"] == 36
    assert not any(BOOT_LINE in output for _, output in outcomes)
