"""The whole inbox pipeline on loopback, every part real but Eventarc and the Admin API.

    fake-gcs-server ──InboxNotifier (Eventarc's push, redelivered with backoff while 5xx)──> the function,
    served over HTTP from trigger/main.py ──jobs.run, executions.list (REST)──> Admin API stand-in
    ──> one `worker-comfyui job` subprocess per execution, each booting its own CPU ComfyUI

For tests/items/drain and bench/bench_drain.py, which count ComfyUI boots: the stand-in relays each
task's output to its logger, and `TaskLog` keeps it ("starting ComfyUI (boot" lines are boots).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

import functions_framework
from werkzeug.serving import make_server

from job.devstack.gcs_emulator import GcsEmulator, free_port
from job.devstack.notifier import InboxNotifier
from job.devstack.run_api import DEFAULT_JOB, Execution, RunApiStandin
from tests.support.comfy import comfy_settings, empty_image_workflow

REPO = Path(__file__).resolve().parents[2]
PROJECT = "local-project"
BOOT_LINE = "starting ComfyUI (boot"
TASK_ARGV = (sys.executable, "-m", "job.devstack.task")  # a free COMFYUI_PORT per task, then `worker-comfyui job`
# The job's variables that a task must not inherit from the shell running the tests.
_JOB_VARS = (
    "REQUEST_URI", "OUTBOX_URI", "BATCH_URI", "DRAIN", "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_INDEX",
    "CLOUD_RUN_TASK_COUNT", "CLOUD_RUN_TASK_ATTEMPT", "COMFYUI_URL", "COMFYUI_PORT", "INBOX_BUCKET",
    "OUTBOX_BUCKET", "OUTBOX_PREFIX", "CLAIMS_PREFIX", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
)  # fmt: skip
_FUNCTION_VARS = (
    "GCP_PROJECT", "REGION", "JOB_NAME", "MAX_REQUEST_BYTES", "CLAIM_WAIT_S", "OUTBOX_PREFIX", "CLAIMS_PREFIX",
)  # fmt: skip


def comfy_env(base_dir: Path, *, api_nodes: bool = False) -> dict[str, str]:
    """COMFYUI_* for tasks that boot their own ComfyUI (job.devstack.task picks each one a port).

    Without `api_nodes` ComfyUI skips its API nodes, a quarter of a CPU boot (~12 s instead of ~16 s).
    """
    settings = comfy_settings(base_dir)
    args = settings.comfyui_args + ("" if api_nodes else " --disable-api-nodes")
    return {"COMFYUI_DIR": str(settings.comfyui_dir), "COMFYUI_ARGS": args}


class TaskLog(logging.Handler):
    """Keeps every line the stand-in relays from its tasks (the message of each JSON line), by execution."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str]] = []  # (execution short name, message)
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.args, tuple) or len(record.args) != 2:
            return
        tag, line = (str(arg) for arg in record.args)
        with contextlib.suppress(ValueError, KeyError, TypeError):  # a line that is not one of our JSON records
            line = str(json.loads(line)["message"])
        with self._lock:
            self.lines.append((tag.split("/")[0], line))

    def of(self, execution: str) -> list[str]:
        with self._lock:
            return [line for tag, line in self.lines if tag == execution]

    def boots(self) -> int:
        with self._lock:
            return sum(BOOT_LINE in line for _, line in self.lines)


class InboxPipeline:
    """One running pipeline with its own inbox bucket: drop items, then read results, executions, logs.

    The function reads its settings from os.environ on its first event; `start()` sets them and
    `stop()` puts the previous values back.
    """

    def __init__(
        self,
        gcs: GcsEmulator,
        comfy: dict[str, str],
        *,
        max_executions: int,
        argv: tuple[str, ...] = TASK_ARGV,
        redelivery_backoff_s: tuple[float, float] = (0.3, 1.0),
        **task_values: object,
    ) -> None:
        self.gcs = gcs
        self.client = gcs.client()
        self.inbox = self.client.bucket(f"inbox-{secrets.token_hex(4)}")
        self.outbox = self.client.bucket("outbox")
        self.folder = f"t{secrets.token_hex(3)}"
        self.task_log = TaskLog()
        self.run_api = RunApiStandin(
            jobs=[DEFAULT_JOB], launch=True, argv=argv, base_env=self._task_env(comfy, task_values), cwd=REPO
        )
        self.function_env = {
            "STORAGE_EMULATOR_HOST": gcs.url, "GOOGLE_CLOUD_PROJECT": PROJECT, "OUTBOX_BUCKET": "outbox",
            "MAX_EXECUTIONS": str(max_executions), "RUN_JOB_TIMEOUT_S": "10", "CLAIM_LEASE_S": "20",
            "FUNCTION_TARGET": "on_inbox_object", "FUNCTION_SIGNATURE_TYPE": "cloudevent",
        }  # fmt: skip
        self._backoff = redelivery_backoff_s
        self._saved_env: dict[str, str | None] = {}
        self._server: Any = None
        self.notifier: InboxNotifier | None = None

    def start(self) -> InboxPipeline:
        self.gcs.create_bucket(self.inbox.name)
        relay = logging.getLogger("job.devstack.run_api")
        relay.addHandler(self.task_log)
        relay.setLevel(logging.INFO)
        self.run_api.start()
        self.function_env["RUN_API_ENDPOINT"] = self.run_api.url
        for name in (*_FUNCTION_VARS, *self.function_env):
            self._saved_env.setdefault(name, os.environ.pop(name, None))
        os.environ.update(self.function_env)
        app = functions_framework.create_app("on_inbox_object", str(REPO / "trigger" / "main.py"), "cloudevent")
        self._server = make_server("127.0.0.1", free_port(), app, threaded=True)
        threading.Thread(target=self._server.serve_forever, name="function", daemon=True).start()
        initial, most = self._backoff
        self.notifier = InboxNotifier(
            self.gcs.url, self.inbox.name, f"http://127.0.0.1:{self._server.port}/", interval_s=0.2,
            attempts=100_000, backoff_s=initial, max_backoff_s=most,
        ).start()  # fmt: skip
        return self

    def stop(self) -> None:
        if self.notifier is not None:
            self.notifier.stop()
        if self._server is not None:
            self._server.shutdown()
        self.run_api.stop()
        logging.getLogger("job.devstack.run_api").removeHandler(self.task_log)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    # --- items ---

    def drop(self, index: int, workflow: dict[str, Any] | None = None) -> str:
        """Upload item `index` (a tiny EmptyImage graph unless given); returns its object name."""
        name = f"{self.folder}/item-{index:02d}.json"
        body = {"workflow": workflow or empty_image_workflow(size=8, prefix=f"item{index:02d}")}
        self.inbox.blob(name).upload_from_string(json.dumps(body), content_type="application/json")
        return name

    def result(self, name: str) -> dict[str, Any] | None:
        blob = self.outbox.get_blob(name.removesuffix(".json") + "/result.json")
        return None if blob is None else json.loads(blob.download_as_bytes())

    def outputs(self, name: str) -> list[str]:
        prefix = name.removesuffix(".json") + "/"
        names = (blob.name.removeprefix(prefix) for blob in self.outbox.list_blobs(prefix=prefix))
        return sorted(n for n in names if n not in ("result.json", "status.json"))

    def claim(self, name: str) -> dict[str, Any] | None:
        generation = self.inbox.get_blob(name).generation
        blob = self.inbox.get_blob(f"_claims/{name}/{generation}")
        return None if blob is None else json.loads(blob.download_as_bytes())

    # --- waiting ---

    def wait_results(self, names: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Each item's result.json, once all are there; AssertionError naming the missing after `timeout`."""
        deadline = time.monotonic() + timeout
        results: dict[str, dict[str, Any]] = {}
        while len(results) < len(names):
            for name in names:
                if name not in results and (found := self.result(name)) is not None:
                    results[name] = found
            if time.monotonic() > deadline:
                missing = sorted(set(names) - set(results))
                raise AssertionError(f"no result.json after {timeout:g} s for {missing}; tasks said:\n{self.tail()}")
            time.sleep(0.2)
        return results

    def wait_idle(self, timeout: float) -> list[Execution]:
        """Every execution finished; the executions, oldest first."""
        deadline = time.monotonic() + timeout
        while any(not execution.done.is_set() for execution in self.run_api.executions()):
            if time.monotonic() > deadline:
                raise AssertionError(f"executions still running after {timeout:g} s; tasks said:\n{self.tail()}")
            time.sleep(0.1)
        return self.run_api.executions()

    def wait_for_line(self, execution: Execution, text: str, timeout: float) -> None:
        short = execution.name.rsplit("/", 1)[-1]
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.task_log.of(short)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{short} never logged {text!r}; tasks said:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(f"[{tag}] {line}" for tag, line in self.task_log.lines[-lines:])

    def _task_env(self, comfy: dict[str, str], values: dict[str, object]) -> dict[str, str]:
        """What every task starts with (the trigger adds REQUEST_URI and OUTBOX_URI)."""
        env = {key: value for key, value in os.environ.items() if key not in _JOB_VARS}
        env.update(self.gcs.env())
        env.update(comfy)
        env.update(GOOGLE_CLOUD_PROJECT=PROJECT, INBOX_BUCKET=self.inbox.name, OUTBOX_BUCKET="outbox")
        env.update(LOG_FORMAT="json", COMFY_LOG_LEVEL="INFO", HISTORY_POLL_S="0.5", STATUS_INTERVAL_S="1")
        env.update(DRAIN_GRACE_S="1.5", DRAIN_LEASE_S="6")
        env.update({key.upper(): str(value) for key, value in values.items()})
        return env
