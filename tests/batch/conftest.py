"""Fixtures for batches: a real fake-gcs-server, a bucket per test holding the spec and the items,
and `worker-comfyui job` tasks run as subprocesses exactly as Cloud Run runs them (BATCH_URI and
CLOUD_RUN_TASK_INDEX/COUNT in, exit code and log out).

Tasks attach to the session ComfyUI (COMFYUI_URL) so they cost no boot; the one test about boots
gives its task a ComfyUI of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from job.devstack.gcs_emulator import GcsEmulator
from tests.items.conftest import JOB_VARS, finish_job, start_job

REPO = Path(__file__).resolve().parents[2]
PROJECT = "local-project"
BOOT_LINE = "starting ComfyUI (boot "


def noise_workflow(size: int = 16) -> dict[str, Any]:
    """EmptyImage -> ImageAddNoise(seed) -> SaveImage: model-free, and the seed shows in the pixels."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": 0, "strength": 0.5}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "batch"}},
    }


@dataclass
class BatchBucket:
    """A bucket of its own per test: the spec under specs/, the items under out/."""

    bucket: Any

    @property
    def prefix(self) -> str:
        return f"gs://{self.bucket.name}/out/"

    def drop_spec(self, spec: dict[str, Any], name: str = "specs/night.batch.json") -> str:
        """Upload the spec; returns its URI at the generation written (as the trigger passes it)."""
        blob = self.bucket.blob(name)
        blob.upload_from_string(json.dumps(spec).encode(), content_type="application/json")
        return f"gs://{self.bucket.name}/{name}#{blob.generation}"

    def names(self, under: str = "out/") -> list[str]:
        return sorted(blob.name.removeprefix(under) for blob in self.bucket.list_blobs(prefix=under))

    def blob(self, relpath: str) -> Any:
        return self.bucket.get_blob(f"out/{relpath}")

    def json(self, relpath: str) -> dict[str, Any] | None:
        blob = self.blob(relpath)
        return None if blob is None else json.loads(blob.download_as_bytes())

    def results(self) -> dict[str, dict[str, Any]]:
        """item id -> result.json, for every item that has one."""
        found = {}
        for name in self.names():
            item_id, _, rest = name.partition("/")
            if rest == "result.json":
                found[item_id] = self.json(name)
        return found

    def files(self, item_id: str) -> list[str]:
        """The files of one item's folder, but for status.json and result.json."""
        return [
            name.removeprefix(f"{item_id}/")
            for name in self.names()
            if name.startswith(f"{item_id}/") and name.rsplit("/", 1)[-1] not in ("status.json", "result.json")
        ]


@pytest.fixture
def batch_bucket(gcs: GcsEmulator, gcs_client: Any) -> BatchBucket:
    name = f"batch-{secrets.token_hex(4)}"
    gcs.create_bucket(name)
    return BatchBucket(gcs_client.bucket(name))


def task_env(gcs: GcsEmulator, **values: Any) -> dict[str, str]:
    """One task's environment: this shell's minus job variables, plus the emulator and `values`."""
    drop = {*JOB_VARS, "BATCH_URI", "OUTBOX_PREFIX", "COMFYUI_DIR"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env.update(gcs.env(), GOOGLE_CLOUD_PROJECT=PROJECT, LOG_FORMAT="json", COMFY_LOG_LEVEL="INFO")
    env.update({key.upper(): str(value) for key, value in values.items() if value is not None})
    return env


@pytest.fixture
def run_tasks(tmp_path: Path) -> Any:
    """Run `count` tasks of one execution at once, to their end; returns [(exit code, log)] by task index."""
    runs = 0

    def _run(env: dict[str, str], count: int, *, timeout: float = 120) -> list[tuple[int, str]]:
        nonlocal runs
        runs += 1
        processes = []
        for index in range(count):
            task = {**env, "CLOUD_RUN_TASK_INDEX": str(index), "CLOUD_RUN_TASK_COUNT": str(count)}
            processes.append((start_job(task, tmp_path / f"run{runs}-task{index}.log"), index))
        outcomes = []
        for process, index in processes:
            code = finish_job(process, timeout)
            output = (tmp_path / f"run{runs}-task{index}.log").read_text(errors="replace")
            sys.stdout.write(f"--- run {runs} task {index} (exit {code}) ---\n{output[-4000:]}\n")
            outcomes.append((code, output))
        return outcomes

    return _run


def log_messages(output: str) -> list[str]:
    """The `message` of each JSON log line of a task (other lines as they are)."""
    messages = []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            messages.append(line)
            continue
        messages.append(str(entry.get("message", "")) if isinstance(entry, dict) else line)
    return messages
