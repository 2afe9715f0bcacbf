"""Starting the Cloud Run job: one `jobs.run` call with env overrides, never waiting for it.

`run_job` returns a long-running Operation at once; its metadata is the new Execution. The
operation completes only when the execution does (minutes later), so we read the execution's name
from the metadata and return; `.result()` is never called. `jobs.run` is not idempotent, so it is
not retried here: a transient failure raises and Eventarc redelivers the event (the claim keeps a
redelivery from starting a second execution once one has started).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from .config import TriggerConfig
from .errors import translate_google_errors


@dataclass(frozen=True)
class Started:
    """What `jobs.run` answered: the execution it created and the operation that tracks it."""

    execution: str
    operation: str


AdminClient = TypeVar("AdminClient", run_v2.JobsClient, run_v2.ExecutionsClient)


def admin_api_client(client_type: type[AdminClient], config: TriggerConfig) -> AdminClient:
    """A Cloud Run Admin API client: the real API with the ambient service account, or the local
    stand-in at RUN_API_ENDPOINT (anonymous, over REST)."""
    if config.run_api_endpoint:
        return client_type(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
            client_options=ClientOptions(api_endpoint=config.run_api_endpoint),
        )
    return client_type()


def make_jobs_client(config: TriggerConfig) -> run_v2.JobsClient:
    """The jobs client; a failure to create it says what to fix."""
    with translate_google_errors("create the Cloud Run Admin API client", _fixes(config.job_path)):
        return admin_api_client(run_v2.JobsClient, config)


class JobLauncher:
    """Runs one Cloud Run job with per-request environment overrides."""

    def __init__(self, client: run_v2.JobsClient, job_path: str, *, timeout_s: float) -> None:
        self._client = client
        self.job_path = job_path
        self._timeout_s = timeout_s

    def start(self, env: Mapping[str, str], *, task_count: int | None = None) -> Started:
        """Create one execution of the job with `env` added to its container; do not wait for it.

        `task_count` overrides the job's (a batch's tasks share its items). Raises TransientError
        (retry the event) or PermanentError (acknowledge it, fix the setup).
        """
        overrides = run_v2.RunJobRequest.Overrides(
            container_overrides=[
                run_v2.RunJobRequest.Overrides.ContainerOverride(
                    env=[run_v2.EnvVar(name=key, value=value) for key, value in env.items()]
                )
            ]
        )
        if task_count is not None:
            overrides.task_count = task_count
        request = run_v2.RunJobRequest(name=self.job_path, overrides=overrides)
        with translate_google_errors(f"run job {self.job_path}", _fixes(self.job_path)):
            operation = self._client.run_job(request=request, timeout=self._timeout_s, retry=None)
            execution = _execution_name(operation)
        operation_name = str(operation.operation.name)
        return Started(execution=execution or operation_name, operation=operation_name)


def _execution_name(operation: object) -> str:
    """The Execution's name from the operation's metadata ('' when the API sent none)."""
    metadata = getattr(operation, "metadata", None)
    return str(getattr(metadata, "name", "") or "")


def _fixes(job_path: str) -> dict[type[BaseException], str]:
    """What to do about each permanent failure of `jobs.run`."""
    return {
        gexc.NotFound: (
            f"Cloud Run job {job_path} does not exist: deploy it, or point GOOGLE_CLOUD_PROJECT, REGION "
            "and JOB_NAME at the job that exists"
        ),
        gexc.Forbidden: (
            f"grant the function's service account roles/run.jobsExecutorWithOverrides (or "
            f"roles/run.developer) on {job_path}; running with overrides needs run.jobs.runWithOverrides"
        ),
        gexc.Unauthorized: "the Admin API refused the function's credentials: check its service account",
        gexc.BadRequest: (
            f"the Admin API refused the run request for {job_path}: check that the job has a single "
            "container and is not mid-deployment"
        ),
        auth_exc.DefaultCredentialsError: (
            "no Google credentials: run on Google Cloud with a service account, or set RUN_API_ENDPOINT "
            "to use the local stand-in"
        ),
    }
