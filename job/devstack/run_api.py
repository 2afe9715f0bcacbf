"""A local stand-in for the Cloud Run Admin API v2, as `run_v2.JobsClient` (REST transport) calls it.

It is not Google's API: it answers the few calls this project makes, in Google's JSON shapes, so
the trigger runs unchanged against it (`RUN_API_ENDPOINT=http://127.0.0.1:PORT`):

    POST /v2/projects/*/locations/*/jobs/*:run          -> Operation, metadata = the new Execution
    GET  /v2/projects/*/locations/*/jobs/*              -> Job
    GET  /v2/projects/*/locations/*/jobs/*/executions   -> {"executions": [...]}, newest first
    GET  /v2/projects/*/locations/*/jobs/*/executions/* -> Execution
    GET  /v2/projects/*/locations/*/operations/*        -> Operation (done once the execution ends)

It records every `:run` body. Unknown jobs answer 404 NOT_FOUND and `forbidden` ones 403
PERMISSION_DENIED, in Google's error JSON, so the client raises NotFound / PermissionDenied;
`fail_next()` makes the next runs answer e.g. 503. With `launch=True` each execution's tasks run
as local processes (`python -m job job` by default) with the overridden env plus the
CLOUD_RUN_* variables a real task sees; they are stopped, process group and all, on `stop()`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from job.devstack.gcs_emulator import ensure_port_free
from job.subprocesses import stop_group

log = logging.getLogger(__name__)

DEFAULT_JOB = "projects/local-project/locations/us-central1/jobs/worker-comfyui"
DEFAULT_ARGV: tuple[str, ...] = (sys.executable, "-m", "job", "job")
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"

_JOB_PATH = r"projects/[^/]+/locations/[^/]+/jobs/[^/:]+"
_ROUTES = [
    ("POST", re.compile(rf"/v2/(?P<job>{_JOB_PATH}):run"), "_run"),
    ("GET", re.compile(rf"/v2/(?P<job>{_JOB_PATH})"), "_get_job"),
    ("GET", re.compile(rf"/v2/(?P<job>{_JOB_PATH})/executions"), "_list_executions"),
    ("GET", re.compile(rf"/v2/(?P<name>{_JOB_PATH}/executions/[^/]+)"), "_get_execution"),
    ("GET", re.compile(r"/v2/(?P<name>projects/[^/]+/locations/[^/]+/operations/[^/]+)"), "_get_operation"),
]


class ExecutionState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class Execution:
    """One execution the stand-in created, with its tasks' processes when it launches them."""

    name: str
    job: str  # the job's full resource name
    operation: str
    env: dict[str, str]
    task_count: int
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    completed: datetime | None = None
    state: ExecutionState = ExecutionState.RUNNING
    exit_codes: dict[int, int] = field(default_factory=dict)  # task index -> exit code
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict[str, Any]:
        """The Execution resource as the REST API spells it (camelCase, RFC 3339 times)."""
        succeeded = sum(1 for code in self.exit_codes.values() if code == 0)
        failed = len(self.exit_codes) - succeeded
        condition = {
            ExecutionState.RUNNING: "CONDITION_PENDING",
            ExecutionState.SUCCEEDED: "CONDITION_SUCCEEDED",
            ExecutionState.FAILED: "CONDITION_FAILED",
        }[self.state]
        body: dict[str, Any] = {
            "name": self.name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, self.name)),
            "job": self.job.rsplit("/", 1)[-1],
            "createTime": _rfc3339(self.created),
            "startTime": _rfc3339(self.created),
            "launchStage": "GA",
            "parallelism": self.task_count,
            "taskCount": self.task_count,
            "template": {"containers": [{"env": [{"name": k, "value": v} for k, v in self.env.items()]}]},
            "runningCount": self.task_count - len(self.exit_codes) if self.state is ExecutionState.RUNNING else 0,
            "succeededCount": succeeded,
            "failedCount": failed,
            "conditions": [{"type": "Completed", "state": condition, "lastTransitionTime": _rfc3339(self.created)}],
            "reconciling": self.state is ExecutionState.RUNNING,
        }
        if self.completed:
            body["completionTime"] = _rfc3339(self.completed)
        return body


class RunApiStandin:
    """The stand-in server: a ThreadingHTTPServer on a loopback port, in a background thread."""

    def __init__(
        self,
        jobs: Iterable[str] = (DEFAULT_JOB,),
        *,
        forbidden: Iterable[str] = (),
        port: int | None = None,
        host: str = "127.0.0.1",
        launch: bool = False,
        argv: Sequence[str] = DEFAULT_ARGV,
        base_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.jobs = set(jobs)
        self.forbidden = set(forbidden)
        self.host = host
        self.port = port or 0
        self.launch = launch
        self.argv = tuple(argv)
        self.base_env = dict(base_env) if base_env is not None else None
        self.cwd = cwd
        self._lock = threading.Lock()
        self._runs: list[dict[str, Any]] = []
        self._executions: dict[str, Execution] = {}
        self._operations: dict[str, str] = {}  # operation name -> execution name
        self._failures: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """What RUN_API_ENDPOINT should be."""
        return f"http://{self.host}:{self.port}"

    @property
    def runs(self) -> list[dict[str, Any]]:
        """Every `:run` request so far: {"job": full name, "body": the JSON body}, oldest first."""
        with self._lock:
            return [dict(run) for run in self._runs]

    def executions(self) -> list[Execution]:
        with self._lock:
            return list(self._executions.values())

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Answer the next `count` runs with this HTTP status (and record them), as a flaky API would."""
        with self._lock:
            self._failures.extend([status] * count)

    def complete(self, execution: str, *, succeeded: bool = True) -> None:
        """Mark an execution that is not launched as a process finished."""
        with self._lock:
            record = self._executions[execution]
            record.exit_codes = {i: 0 if succeeded else 1 for i in range(record.task_count)}
            self._finish(record)

    def wait(self, execution: str, timeout: float) -> Execution:
        """Block until the execution finishes; TimeoutError after `timeout` seconds."""
        record = self._executions[execution]
        if not record.done.wait(timeout):
            raise TimeoutError(f"execution {execution} still running after {timeout:g} s")
        return record

    def start(self) -> RunApiStandin:
        if self._server is not None:
            return self
        if self.port:
            ensure_port_free(self.host, self.port, what="Cloud Run Admin API stand-in")
        handler = type("_BoundHandler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="run-api-standin", daemon=True
        )
        self._thread.start()
        log.info("Cloud Run Admin API stand-in on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and stop every task process still running (its whole process group)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for record in self.executions():
            for process in record.processes:
                stop_group(process, name="job task")

    def __enter__(self) -> RunApiStandin:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- routes: each returns (status, JSON body) ---

    def _run(self, job: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._runs.append({"job": job, "body": body})
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return _error(failure, f"the stand-in was told to fail this run with {failure}")
        if (refused := self._refuse(job, "run.jobs.runWithOverrides")) is not None:
            return refused
        overrides = body.get("overrides") or {}
        env: dict[str, str] = {}
        for container in overrides.get("containerOverrides") or []:
            env.update({item["name"]: item.get("value", "") for item in container.get("env") or []})
        location = job.split("/jobs/")[0]
        short = job.rsplit("/", 1)[-1]
        record = Execution(
            name=f"{job}/executions/{short}-{secrets.token_hex(3)[:5]}",
            job=job,
            operation=f"{location}/operations/{uuid.uuid4()}",
            env=env,
            task_count=int(overrides.get("taskCount") or 1),
        )
        with self._lock:
            self._executions[record.name] = record
            self._operations[record.operation] = record.name
        if self.launch:
            self._launch(record)
        return HTTPStatus.OK, self._operation_json(record)

    def _get_job(self, job: str) -> tuple[int, dict[str, Any]]:
        if (refused := self._refuse(job, "run.jobs.get")) is not None:
            return refused
        mine = [e for e in self.executions() if e.job == job]
        body: dict[str, Any] = {
            "name": job,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, job)),
            "generation": "1",
            "launchStage": "GA",
            "template": {"taskCount": 1, "template": {"containers": [{"image": "local/worker-comfyui"}]}},
            "executionCount": len(mine),
            "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
        }
        if mine:
            body["latestCreatedExecution"] = {"name": mine[-1].name, "createTime": _rfc3339(mine[-1].created)}
        return HTTPStatus.OK, body

    def _list_executions(self, job: str) -> tuple[int, dict[str, Any]]:
        if (refused := self._refuse(job, "run.executions.list")) is not None:
            return refused
        mine = [e.to_json() for e in reversed(self.executions()) if e.job == job]
        return HTTPStatus.OK, {"executions": mine} if mine else {}

    def _get_execution(self, name: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            record = self._executions.get(name)
        if record is None:
            return _error(404, f"Execution {name} not found")
        return HTTPStatus.OK, record.to_json()

    def _get_operation(self, name: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            execution = self._operations.get(name)
            record = self._executions.get(execution or "")
        if record is None:
            return _error(404, f"Operation {name} not found")
        return HTTPStatus.OK, self._operation_json(record)

    def _refuse(self, job: str, permission: str) -> tuple[int, dict[str, Any]] | None:
        if job in self.forbidden:
            return _error(403, f"Permission '{permission}' denied on resource '{job}' (or it may not exist).")
        if job not in self.jobs:
            short, region = job.rsplit("/", 1)[-1], job.split("/")[3]
            return _error(404, f"Resource '{short}' of kind 'JOB' in region '{region}' does not exist.")
        return None

    def _operation_json(self, record: Execution) -> dict[str, Any]:
        execution = {"@type": EXECUTION_TYPE, **record.to_json()}
        body: dict[str, Any] = {"name": record.operation, "metadata": execution, "done": record.done.is_set()}
        if record.state is ExecutionState.SUCCEEDED:
            body["response"] = execution
        elif record.state is ExecutionState.FAILED:
            body["error"] = {"code": 2, "message": f"Execution {record.name} failed: exit codes {record.exit_codes}"}
        return body

    # --- launching tasks as processes ---

    def _launch(self, record: Execution) -> None:
        base = dict(os.environ) if self.base_env is None else dict(self.base_env)
        for index in range(record.task_count):
            env = {
                **base,
                **record.env,
                "CLOUD_RUN_JOB": record.job.rsplit("/", 1)[-1],
                "CLOUD_RUN_EXECUTION": record.name.rsplit("/", 1)[-1],
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": str(record.task_count),
                "CLOUD_RUN_TASK_ATTEMPT": "0",
            }
            process = subprocess.Popen(
                list(self.argv),
                env=env,
                cwd=self.cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,  # its own process group, so stop() reaches grandchildren too
            )
            record.processes.append(process)
            tag = f"{env['CLOUD_RUN_EXECUTION']}/task-{index}"
            threading.Thread(target=self._watch, args=(record, index, process, tag), name=tag, daemon=True).start()

    def _watch(self, record: Execution, index: int, process: subprocess.Popen[str], tag: str) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.info("[%s] %s", tag, line.rstrip())
        code = process.wait()
        log.info("[%s] exited with %d", tag, code)
        with self._lock:
            record.exit_codes[index] = code
            if len(record.exit_codes) == record.task_count:
                self._finish(record)

    @staticmethod
    def _finish(record: Execution) -> None:
        ok = all(code == 0 for code in record.exit_codes.values())
        record.state = ExecutionState.SUCCEEDED if ok else ExecutionState.FAILED
        record.completed = datetime.now(UTC)
        record.done.set()


class _Handler(BaseHTTPRequestHandler):
    standin: RunApiStandin
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body = _error(404, f"the stand-in does not serve {method} {path}")
        for verb, pattern, route in _ROUTES:
            match = pattern.fullmatch(path)
            if verb == method and match:
                args: list[Any] = list(match.groupdict().values())
                if method == "POST":
                    try:
                        args.append(json.loads(raw or b"{}"))
                    except ValueError:
                        status, body = _error(400, "the request body is not JSON")
                        break
                status, body = getattr(self.standin, route)(*args)
                break
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}


def _error(code: int, message: str) -> tuple[int, dict[str, Any]]:
    """Google's JSON error body, which google-api-core maps to NotFound, PermissionDenied, ..."""
    status = _STATUS.get(code, "UNAVAILABLE" if code == 503 else "INTERNAL" if code >= 500 else "FAILED_PRECONDITION")
    return code, {"error": {"code": code, "message": message, "status": status}}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
