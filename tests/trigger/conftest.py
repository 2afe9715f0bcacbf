"""Fixtures for the trigger: a real fake-gcs-server, the Admin API stand-in, and the function
loaded by functions-framework from `trigger/main.py` exactly as Cloud Functions loads it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from cloudevents.http import CloudEvent

from job.devstack.gcs_emulator import GcsEmulator
from job.devstack.run_api import DEFAULT_JOB, RunApiStandin
from tests.support.gcs_events import Mode, finalized_event, post_event

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "trigger" / "main.py"
TARGET = "on_inbox_object"
FORBIDDEN_JOB = "projects/local-project/locations/us-central1/jobs/secret-job"
TRIGGER_VARS = (
    "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "REGION", "JOB_NAME", "OUTBOX_BUCKET", "OUTBOX_PREFIX",
    "CLAIMS_PREFIX", "MAX_REQUEST_BYTES", "CLAIM_LEASE_S", "CLAIM_WAIT_S", "RUN_JOB_TIMEOUT_S",
    "RUN_API_ENDPOINT", "STORAGE_EMULATOR_HOST", "MAX_EXECUTIONS",
)  # fmt: skip
WORKFLOW = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}


@pytest.fixture
def run_api() -> Iterator[RunApiStandin]:
    """The Admin API stand-in: the default job exists, FORBIDDEN_JOB answers 403, others 404."""
    with RunApiStandin(jobs=[DEFAULT_JOB, FORBIDDEN_JOB], forbidden=[FORBIDDEN_JOB]) as api:
        yield api


@pytest.fixture
def trigger_env(monkeypatch: pytest.MonkeyPatch, gcs: GcsEmulator, run_api: RunApiStandin) -> pytest.MonkeyPatch:
    """The function's environment: local stand-ins, defaults otherwise. Tests adjust it further."""
    return set_trigger_env(monkeypatch, gcs, run_api)


def set_trigger_env(monkeypatch: pytest.MonkeyPatch, gcs: GcsEmulator, run_api: RunApiStandin) -> pytest.MonkeyPatch:
    """The function's environment pointed at `gcs` and `run_api`, every other trigger variable unset."""
    for name in TRIGGER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    monkeypatch.setenv("RUN_API_ENDPOINT", run_api.url)
    monkeypatch.setenv("RUN_JOB_TIMEOUT_S", "5")
    monkeypatch.setenv("CLAIM_LEASE_S", "30")
    # functions-framework writes these two into os.environ; setting them first lets monkeypatch undo it.
    monkeypatch.setenv("FUNCTION_TARGET", TARGET)
    monkeypatch.setenv("FUNCTION_SIGNATURE_TYPE", "cloudevent")
    return monkeypatch


class Function:
    """The deployed function's stand-in host: functions-framework's own app and its test client."""

    def __init__(self) -> None:
        self.app = functions_framework.create_app(TARGET, str(SOURCE), "cloudevent")

    def deliver(self, event: CloudEvent, mode: Mode = "structured") -> Any:
        """One Eventarc push; a fresh test client per call, so threads never share one."""
        return post_event(self.app.test_client(), event, mode)


@pytest.fixture
def function(trigger_env: pytest.MonkeyPatch) -> Function:
    """The function under test. It reads its environment on its first event, not at load."""
    return Function()


@pytest.fixture
def drop(inbox: Any) -> Callable[..., CloudEvent]:
    """Upload an object to the inbox and return the finalized event Eventarc would send for it."""

    def _drop(name: str, body: bytes | None = None) -> CloudEvent:
        blob = inbox.blob(name)
        blob.upload_from_string(
            body if body is not None else json.dumps(WORKFLOW).encode(), content_type="application/json"
        )
        return finalized_event(inbox.name, name, blob.generation, blob.size)

    return _drop


def read_claim(bucket: Any, name: str, generation: int | str, prefix: str = "_claims/") -> dict[str, Any] | None:
    """The claim object's JSON for one object generation, read straight from GCS."""
    blob = bucket.get_blob(f"{prefix}{name}/{generation}")
    return None if blob is None else json.loads(blob.download_as_bytes())
