"""The drain sweep (Cloud Scheduler runs the job with DRAIN=true): the belt and braces for stranded items."""

from __future__ import annotations

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from job.devstack.run_api import DEFAULT_JOB
from tests.support.inbox_pipeline import InboxPipeline


def _sweep(line: InboxPipeline) -> str:
    """Run the job as eventarc.tf's drain_sweep schedule does: DRAIN=true, one task, no item of its own."""
    client = run_v2.JobsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=line.run_api.url),
    )
    overrides = run_v2.RunJobRequest.Overrides(
        container_overrides=[
            run_v2.RunJobRequest.Overrides.ContainerOverride(env=[run_v2.EnvVar(name="DRAIN", value="true")])
        ],
        task_count=1,
    )
    operation = client.run_job(request=run_v2.RunJobRequest(name=DEFAULT_JOB, overrides=overrides))
    return str(operation.metadata.name)


def test_sweep_with_nothing_pending_exits_before_booting_comfyui(pipeline):
    line: InboxPipeline = pipeline(max_executions=2)

    execution = line.run_api.wait(_sweep(line), timeout=60)

    assert execution.exit_codes == {0: 0}
    assert line.task_log.boots() == 0
    assert any("nothing pending" in entry for entry in line.task_log.of(execution.name.rsplit("/", 1)[-1]))


@pytest.mark.slow
def test_sweep_runs_an_item_whose_event_was_lost_and_records_itself(pipeline):
    line: InboxPipeline = pipeline(max_executions=2)
    line.notifier.stop()  # Eventarc never delivers this one
    stranded = line.drop(0)

    execution = line.run_api.wait(_sweep(line), timeout=90)

    assert execution.exit_codes == {0: 0}
    result = line.result(stranded)
    assert result is not None and result["status"] == "success"
    assert result["execution"]["name"] == execution.name.rsplit("/", 1)[-1]
    assert result["execution"]["drained"] is True
    assert line.claim(stranded)["state"] == "done"
    assert line.task_log.boots() == 1
