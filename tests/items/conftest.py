"""Fixtures for the job: a real fake-gcs-server with inbox and outbox buckets, and `worker-comfyui job`
run as a subprocess exactly as a Cloud Run task runs it (env in, exit code out).

Most tests attach their job to the session ComfyUI (COMFYUI_URL), so they cost no boot; the tests
that kill or break ComfyUI give the job its own child on a free port with its own base directory.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from job.devstack.gcs_emulator import GcsEmulator, free_port
from tests.support.comfy import comfy_settings
from trigger.objects import InboxLayout

REPO = Path(__file__).resolve().parents[2]
PROJECT = "local-project"
# Everything the job reads from the environment that a test must not inherit from the shell.
JOB_VARS = (
    "REQUEST_URI", "OUTBOX_URI", "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT",
    "CLOUD_RUN_TASK_ATTEMPT", "JOB_MAX_RETRIES", "WEBHOOK_SECRET", "COMFYUI_URL", "COMFYUI_PORT", "COMFYUI_ARGS",
    "OUTBOX_BUCKET", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
)  # fmt: skip


@dataclass
class Item:
    """One inbox object generation and where its outbox folder is."""

    bucket: Any
    name: str
    generation: int
    outbox: Any  # the outbox bucket

    @property
    def request_uri(self) -> str:
        return f"gs://{self.bucket.name}/{self.name}#{self.generation}"

    @property
    def prefix(self) -> str:
        return InboxLayout(self.outbox.name).outbox_path(self.name)

    @property
    def outbox_uri(self) -> str:
        return f"gs://{self.outbox.name}/{self.prefix}"

    def outbox_object(self, relpath: str) -> Any:
        return self.outbox.get_blob(self.prefix + relpath)

    def outbox_names(self) -> list[str]:
        return sorted(blob.name.removeprefix(self.prefix) for blob in self.outbox.list_blobs(prefix=self.prefix))

    def result(self) -> dict[str, Any] | None:
        blob = self.outbox_object("result.json")
        return None if blob is None else json.loads(blob.download_as_bytes())

    def status(self) -> dict[str, Any] | None:
        blob = self.outbox_object("status.json")
        return None if blob is None else json.loads(blob.download_as_bytes())

    def read(self, uri: str) -> bytes:
        """The bytes of a gs:// URI that result.json lists."""
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        assert bucket == self.outbox.name
        data: bytes = self.outbox.blob(name).download_as_bytes()
        return data


@pytest.fixture
def outbox(gcs_client: Any) -> Any:
    return gcs_client.bucket("outbox")


@pytest.fixture
def drop(inbox: Any, outbox: Any) -> Any:
    """Upload a request (a dict as JSON, or raw bytes) to the inbox; returns the Item."""

    def _drop(request: dict[str, Any] | bytes, name: str | None = None) -> Item:
        name = name or f"requests/{secrets.token_hex(4)}.json"
        blob = inbox.blob(name)
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        blob.upload_from_string(body, content_type="application/json")
        return Item(bucket=inbox, name=name, generation=int(blob.generation), outbox=outbox)

    return _drop


def job_env(gcs: GcsEmulator, **values: Any) -> dict[str, str]:
    """The environment of one job process: this shell's, minus job variables, plus the emulator and `values`."""
    env = {key: value for key, value in os.environ.items() if key not in JOB_VARS}
    env.update(gcs.env(), GOOGLE_CLOUD_PROJECT=PROJECT, LOG_FORMAT="json", COMFY_LOG_LEVEL="INFO")
    env.update(DRAIN_MAX_ITEMS="1")  # one item per run here; draining further items is tests/items/drain's
    env.update({key.upper(): str(value) for key, value in values.items() if value is not None})
    return env


def own_comfyui_env(base_dir: Path) -> dict[str, str]:
    """COMFYUI_* for a job that boots its own ComfyUI on a free port, apart from the session one."""
    settings = comfy_settings(base_dir)
    return {
        "COMFYUI_DIR": str(settings.comfyui_dir),
        "COMFYUI_PORT": str(free_port()),
        "COMFYUI_ARGS": settings.comfyui_args,
        "HISTORY_POLL_S": "0.5",
    }


def start_job(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """`python -m job job [args]` (the image's `worker-comfyui job`) in its own process group."""
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "job", "job", *args],
            env=env,
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def finish_job(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Its exit code; past `timeout` the whole process group is killed (and the wait's error raised)."""
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()


@pytest.fixture
def run_job(tmp_path: Path) -> Any:
    """Run a job to its end; returns (exit code, its log). The log is printed when a test fails."""
    runs = 0

    def _run(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, str]:
        nonlocal runs
        runs += 1
        log_path = tmp_path / f"job-{runs}.log"
        code = finish_job(start_job(env, log_path, *args), timeout)
        output = log_path.read_text(errors="replace")
        sys.stdout.write(f"--- job run {runs} (exit {code}) ---\n{output[-6000:]}\n")
        return code, output

    return _run
