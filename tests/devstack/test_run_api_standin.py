"""The Cloud Run Admin API stand-in, driven by the real run_v2 clients over REST."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from job.devstack.run_api import DEFAULT_JOB, RunApiStandin

DUMP_ENV = """
import json, os, pathlib, sys
keep = {k: v for k, v in os.environ.items() if k.startswith(("CLOUD_RUN_", "REQUEST_", "OUTBOX_", "BASE_"))}
out = pathlib.Path(os.environ["BASE_OUT"]) / f"task-{os.environ['CLOUD_RUN_TASK_INDEX']}.json"
out.write_text(json.dumps(keep))
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""

SLEEP_WITH_A_CHILD = """
import os, pathlib, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
pathlib.Path(os.environ["BASE_OUT"], "pids").write_text(f"{os.getpid()} {child.pid}")
time.sleep(300)
"""


def _clients(api):
    kwargs: dict[str, Any] = {
        "credentials": AnonymousCredentials(),
        "transport": "rest",
        "client_options": ClientOptions(api_endpoint=api.url),
    }
    return run_v2.JobsClient(**kwargs), run_v2.ExecutionsClient(**kwargs)


def _run(jobs, env, task_count=None, job=DEFAULT_JOB):
    overrides = run_v2.RunJobRequest.Overrides(
        container_overrides=[
            run_v2.RunJobRequest.Overrides.ContainerOverride(
                env=[run_v2.EnvVar(name=k, value=v) for k, v in env.items()]
            )
        ],
        task_count=task_count,
    )
    return jobs.run_job(request=run_v2.RunJobRequest(name=job, overrides=overrides))


def test_launched_tasks_see_the_overrides_and_cloud_run_variables(tmp_path):
    argv = [sys.executable, "-c", DUMP_ENV]
    with RunApiStandin(launch=True, argv=argv, base_env={"BASE_OUT": str(tmp_path)}) as api:
        jobs, executions = _clients(api)

        operation = _run(jobs, {"REQUEST_URI": "gs://inbox/a.json#1", "OUTBOX_URI": "gs://outbox/a/"}, task_count=2)
        execution_name = operation.metadata.name
        api.wait(execution_name, timeout=30)

        [listed] = executions.list_executions(parent=DEFAULT_JOB)
        assert listed.name == execution_name
        assert (listed.task_count, listed.succeeded_count, listed.failed_count) == (2, 2, 0)
        assert listed.conditions[0].state == run_v2.Condition.State.CONDITION_SUCCEEDED
        assert listed.completion_time
        assert jobs.get_operation({"name": operation.operation.name}).done
        assert jobs.get_job(name=DEFAULT_JOB).latest_created_execution.name == execution_name

    short = execution_name.rsplit("/", 1)[-1]
    for index in (0, 1):
        seen = json.loads((tmp_path / f"task-{index}.json").read_text())
        assert seen == {
            "BASE_OUT": str(tmp_path),
            "REQUEST_URI": "gs://inbox/a.json#1",
            "OUTBOX_URI": "gs://outbox/a/",
            "CLOUD_RUN_JOB": "worker-comfyui",
            "CLOUD_RUN_EXECUTION": short,
            "CLOUD_RUN_TASK_INDEX": str(index),
            "CLOUD_RUN_TASK_COUNT": "2",
            "CLOUD_RUN_TASK_ATTEMPT": "0",
        }


def test_a_failing_task_fails_the_execution(tmp_path):
    argv = [sys.executable, "-c", DUMP_ENV]
    with RunApiStandin(launch=True, argv=argv, base_env={"BASE_OUT": str(tmp_path), "EXIT_CODE": "3"}) as api:
        jobs, executions = _clients(api)
        name = _run(jobs, {}).metadata.name

        record = api.wait(name, timeout=30)

        assert record.exit_codes == {0: 3}
        execution = executions.get_execution(name=name)
        assert execution.failed_count == 1
        assert execution.conditions[0].state == run_v2.Condition.State.CONDITION_FAILED


def test_stop_terminates_running_tasks_and_their_children(tmp_path):
    argv = [sys.executable, "-c", SLEEP_WITH_A_CHILD]
    api = RunApiStandin(launch=True, argv=argv, base_env={"BASE_OUT": str(tmp_path)}).start()
    try:
        _run(_clients(api)[0], {})
        pids_file = tmp_path / "pids"
        deadline = time.monotonic() + 30
        while not pids_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        task_pid, child_pid = map(int, pids_file.read_text().split())
    finally:
        api.stop()

    for pid in (task_pid, child_pid):
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"process {pid} outlived the stand-in"


def test_unknown_and_forbidden_jobs_raise_what_the_real_api_raises():
    forbidden = DEFAULT_JOB.replace("worker-comfyui", "locked")
    with RunApiStandin(jobs=[DEFAULT_JOB, forbidden], forbidden=[forbidden]) as api:
        jobs, _ = _clients(api)

        with pytest.raises(gexc.NotFound, match="does not exist"):
            _run(jobs, {}, job=DEFAULT_JOB.replace("worker-comfyui", "missing"))
        with pytest.raises(gexc.Forbidden, match="runWithOverrides"):
            _run(jobs, {}, job=forbidden)
        api.fail_next(1, status=503)
        with pytest.raises(gexc.ServiceUnavailable):
            _run(jobs, {})
        assert len(api.runs) == 3 and api.executions() == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
