"""No item is stranded: a drop that lands while the last task is exiting is still run."""

from __future__ import annotations

import sys

import pytest

from tests.support.inbox_pipeline import InboxPipeline

# The task, then 2 s more before the execution counts as finished: a container shutting down slowly.
LINGERING_TASK = ("/bin/sh", "-c", f'"{sys.executable}" -m job.devstack.task; code=$?; sleep 2; exit $code')


@pytest.mark.slow
def test_drop_arriving_while_the_last_task_exits_is_run_by_a_new_execution(pipeline):
    line: InboxPipeline = pipeline(max_executions=1, argv=LINGERING_TASK)
    first = line.drop(0)
    line.wait_results([first], timeout=90)
    [exiting] = line.run_api.executions()
    line.wait_for_line(exiting, "drain: nothing pending after", timeout=30)  # its final re-check is over

    late = line.drop(1)  # the execution is still active, so the trigger may not start another one
    result = line.wait_results([late], timeout=90)[late]
    executions = line.wait_idle(timeout=60)

    assert len(executions) == 2
    [delivery] = [d for d in line.notifier.deliveries if d.name == late]
    assert delivery.ok and delivery.attempts >= 2  # answered 5xx first (at MAX_EXECUTIONS), then started
    assert result["status"] == "success"
    assert result["execution"]["name"] == executions[1].name.rsplit("/", 1)[-1]
    assert not any(late in entry for entry in line.task_log.of(exiting.name.rsplit("/", 1)[-1]))
    assert line.task_log.boots() == 2
    assert line.claim(late)["state"] == "started"
