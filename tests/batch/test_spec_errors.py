"""A bad batch spec is refused before any work starts, with a message that says what to fix: the
task exits 2 without booting ComfyUI or writing a byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from job.batch.task import prepare_batch
from job.errors import InvalidJSON, InvalidRequest, UIFormatWorkflow
from job.settings import Settings
from job.storage import Storages
from tests.batch.conftest import BOOT_LINE, log_messages, noise_workflow, task_env
from tests.items.conftest import own_comfyui_env

SETTINGS = Settings(outbox_uri=None, cloud_run_execution=None)  # whatever this shell has set
UI_FORMAT = json.loads((Path(__file__).resolve().parents[1] / "data" / "ui_format_workflow.json").read_text())


def spec(**fields):
    base = {"workflow": noise_workflow(), "grid": {"2": {"seed": {"random": 2}}}}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


CASES = [
    (spec(tasks=0), InvalidRequest, "`tasks`: Input should be greater than or equal to 1"),
    (spec(grid=None), InvalidRequest, "exactly one of `items`"),
    (spec(items=[{"overrides": {}}]), InvalidRequest, "exactly one of `items`"),
    (spec(grid={"2": {"seed": 7}}), InvalidRequest, "must be a non-empty list of values"),
    (spec(grid={"2": {"strength": {"random": 3}}}), InvalidRequest, "'strength' is not a seed input"),
    (spec(grid={"9": {"seed": [1]}}), InvalidRequest, "node '9' is not in the workflow (its nodes: 1, 2, 3)"),
    (
        spec(grid=None, items=[{"overrides": {"2": {"sed": 1}}}]),
        InvalidRequest,
        "`items.0.overrides`: node 2 (ImageAddNoise) has no input 'sed'; its inputs are: image, seed, strength",
    ),
    (spec(grid=None, items=[{"id": "a"}, {"id": "a"}]), InvalidRequest, "items 0 and 1 share the id 'a'"),
    (spec(grid=None, items=[{"id": "../up"}]), InvalidRequest, "`items.0.id` '../up' must be 1-128 letters"),
    (spec(prefix="out/{date}/"), InvalidRequest, "the placeholder {date}; the only one is {execution}"),
    (spec(colour="red"), InvalidRequest, "`colour`: Extra inputs are not permitted"),
    (spec(workflow=UI_FORMAT), UIFormatWorkflow, "`workflow`: this workflow is in ComfyUI's UI format"),
    (spec(workflow="missing.json"), InvalidRequest, "missing.json) does not exist"),
]


@pytest.mark.parametrize(("doc", "error", "message"), CASES, ids=[case[2][:40] for case in CASES])
def test_bad_spec_is_refused_with_what_to_fix(tmp_path, doc, error, message):
    path = tmp_path / "bad.batch.json"
    path.write_text(json.dumps(doc))

    with pytest.raises(error) as raised:
        prepare_batch(str(path), Storages(), SETTINGS)

    assert message in raised.value.message
    assert str(path) in raised.value.message
    assert list(tmp_path.iterdir()) == [path]


def test_spec_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "broken.batch.json"
    path.write_text('{"workflow": ')

    with pytest.raises(InvalidJSON, match="is not valid JSON"):
        prepare_batch(str(path), Storages(), SETTINGS)


def test_workflow_path_is_read_relative_to_the_spec(tmp_path):
    (tmp_path / "wf.json").write_text(json.dumps(noise_workflow()))
    path = tmp_path / "ok.batch.json"
    path.write_text(json.dumps(spec(workflow="wf.json")))

    prepared = prepare_batch(str(path), Storages(), SETTINGS)

    assert prepared.batch.workflow == noise_workflow()
    assert prepared.batch.prefix == f"{tmp_path}/ok/"  # beside the spec, named after it
    assert [item.id for item in prepared.items] == ["0000", "0001"]


def test_invalid_spec_task_exits_2_before_booting_or_writing(gcs, batch_bucket, run_tasks, tmp_path):
    doc = spec(prefix=batch_bucket.prefix, grid={"2": {"seeed": [1, 2]}})
    uri = batch_bucket.drop_spec(doc)
    own = own_comfyui_env(tmp_path / "never-booted")  # a task that would boot its own ComfyUI

    [(code, output)] = run_tasks(task_env(gcs, batch_uri=uri, **own), 1)

    assert code == 2
    messages = log_messages(output)
    assert any("node 2 (ImageAddNoise) has no input 'seeed'" in m and "nothing was run" in m for m in messages)
    assert not any(BOOT_LINE in message for message in messages)
    assert batch_bucket.names() == []
