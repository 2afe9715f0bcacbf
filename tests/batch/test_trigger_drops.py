"""A `.batch.json` dropped into the inbox starts one execution with BATCH_URI at that generation and
the spec's own task count, through the real function (functions-framework) and the real Admin API
client against the stand-in; launched, its tasks run the batch to its summary."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from job.devstack.run_api import DEFAULT_JOB, RunApiStandin
from tests.batch.conftest import noise_workflow, task_env
from tests.support.gcs_events import finalized_event
from tests.trigger.conftest import Function, read_claim, set_trigger_env


@pytest.fixture
def launching_api(gcs, attached) -> Iterator[RunApiStandin]:
    """The Admin API stand-in, running each execution's tasks as `worker-comfyui job` processes."""
    with RunApiStandin(jobs=[DEFAULT_JOB], launch=True, base_env=task_env(gcs, **attached)) as api:
        yield api


@pytest.fixture
def plain_api() -> Iterator[RunApiStandin]:
    with RunApiStandin(jobs=[DEFAULT_JOB]) as api:
        yield api


def function_for(monkeypatch, gcs, api: RunApiStandin) -> Function:
    set_trigger_env(monkeypatch, gcs, api)
    return Function()


def drop(bucket, name: str, doc: dict):
    blob = bucket.blob(name)
    blob.upload_from_string(json.dumps(doc).encode(), content_type="application/json")
    return finalized_event(bucket.name, name, blob.generation, blob.size)


def run_env(run: dict) -> dict[str, str]:
    [container] = run["body"]["overrides"]["containerOverrides"]
    return {item["name"]: item["value"] for item in container["env"]}


def test_batch_drop_starts_one_execution_with_the_spec_uri_and_its_task_count(
    monkeypatch, gcs, batch_bucket, plain_api
):
    function = function_for(monkeypatch, gcs, plain_api)
    event = drop(batch_bucket.bucket, "nightly/foxes.batch.json", {"workflow": {}, "items": [{}], "tasks": 4})
    generation = event.data["generation"]

    assert [function.deliver(event).status_code for _ in range(3)] == [200, 200, 200]

    [run] = plain_api.runs
    assert run["body"]["overrides"]["taskCount"] == 4
    assert run_env(run) == {"BATCH_URI": f"gs://{batch_bucket.bucket.name}/nightly/foxes.batch.json#{generation}"}
    claim = read_claim(batch_bucket.bucket, "nightly/foxes.batch.json", generation)
    assert claim["state"] == "started"


def test_batch_drop_without_tasks_runs_one_task_and_a_plain_drop_sets_no_count(
    monkeypatch, gcs, batch_bucket, plain_api
):
    function = function_for(monkeypatch, gcs, plain_api)

    function.deliver(drop(batch_bucket.bucket, "one.batch.json", {"workflow": {}, "items": [{}]}))
    function.deliver(drop(batch_bucket.bucket, "single.json", {"workflow": noise_workflow()}))

    batch_run, single_run = plain_api.runs
    assert batch_run["body"]["overrides"]["taskCount"] == 1
    assert "taskCount" not in single_run["body"]["overrides"]
    assert set(run_env(single_run)) == {"REQUEST_URI", "OUTBOX_URI"}


@pytest.mark.parametrize(
    ("body", "fix"),
    [(b'{"tasks": ', "is not JSON"), (b'{"tasks": 0, "items": []}', "`tasks` is 0; give a whole number from 1")],
)
def test_batch_drop_with_an_unreadable_task_count_starts_nothing_and_records_why(
    monkeypatch, gcs, batch_bucket, plain_api, body, fix
):
    function = function_for(monkeypatch, gcs, plain_api)
    blob = batch_bucket.bucket.blob("bad.batch.json")
    blob.upload_from_string(body, content_type="application/json")

    response = function.deliver(finalized_event(batch_bucket.bucket.name, "bad.batch.json", blob.generation, blob.size))

    assert response.status_code == 200  # acknowledged: a redelivery cannot fix the spec
    assert plain_api.runs == []
    claim = read_claim(batch_bucket.bucket, "bad.batch.json", blob.generation)
    assert claim["state"] == "failed" and fix in claim["error"]


@pytest.mark.comfyui
def test_batch_drop_runs_to_its_summary_across_the_spec_tasks(monkeypatch, gcs, batch_bucket, launching_api):
    function = function_for(monkeypatch, gcs, launching_api)
    spec = {
        "workflow": noise_workflow(),
        "grid": {"2": {"seed": {"random": 5}}},
        "prefix": f"gs://{batch_bucket.bucket.name}/out/",
        "tasks": 2,
    }

    assert function.deliver(drop(batch_bucket.bucket, "drops/five.batch.json", spec)).status_code == 200

    [execution] = launching_api.executions()
    finished = launching_api.wait(execution.name, timeout=120)
    assert finished.exit_codes == {0: 0, 1: 0}
    results = batch_bucket.results()
    assert sorted(results) == ["0000", "0001", "0002", "0003", "0004"]
    assert {result["execution"]["task_index"] for result in results.values()} == {0, 1}
    assert {result["batch"]["id"] for result in results.values()} == {"five"}  # named after the spec
    summary = batch_bucket.json("summary.json")
    assert summary["counts"] == {"items": 5, "succeeded": 5, "failed": 0}
    assert [task["share"] for task in summary["tasks"]] == [2, 3]
