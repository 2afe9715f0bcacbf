"""`worker-comfyui dev`'s engine: the whole inbox pipeline on loopback, started in order, stopped in reverse.

    notifier ──polls──> fake-gcs-server: inbox, outbox (files under DATA/gcs)
       │ object.finalized CloudEvent, binary mode, as Eventarc pushes it
       v
    function: functions-framework serving trigger/main.py ──jobs.run (REST)──> Admin API stand-in
                                                                                 │ one `worker-comfyui job`
    service: `worker-comfyui serve` ──┐                                          v  process per execution
                                      └──────> ComfyUI on CPU <──── attached via COMFYUI_URL (or boots its own)

Every part is the code GCP runs, with Google's pieces swapped for the local stand-ins in `job.devstack`;
only the notifier (Eventarc) and the Admin API are imitations. Logs go to DATA/logs/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypeVar

from job.client.local_stack import StackInfo, StackNotRunning
from job.comfyui.install import install_comfyui
from job.comfyui.process import ComfyServer, State
from job.devstack.children import Child, StackError
from job.devstack.gcs_emulator import GcsEmulator
from job.devstack.notifier import InboxNotifier
from job.devstack.ports import Ports, resolve_ports
from job.devstack.run_api import ExecutionState, RunApiStandin
from job.settings import Settings

log = logging.getLogger(__name__)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


_Part = TypeVar("_Part", bound=_Stoppable)

REGION = "us-central1"
JOB_NAME = "worker-comfyui"
FUNCTION_TARGET = "on_inbox_object"
# Variables the stack sets for its children; the caller's own values would point them elsewhere.
_OWNED_VARS = (
    "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "RUN_API_ENDPOINT", "REGION", "JOB_NAME",
    "INBOX_BUCKET", "OUTBOX_BUCKET", "OUTBOX_PREFIX", "REQUEST_URI", "OUTBOX_URI", "COMFYUI_URL", "COMFYUI_PORT",
    "COMFYUI_HOST", "PORT", "HOST", "FUNCTION_TARGET", "FUNCTION_SOURCE", "FUNCTION_SIGNATURE_TYPE", "DEBUG",
    "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT", "CLOUD_RUN_TASK_ATTEMPT", "JOB_MAX_RETRIES",
)  # fmt: skip


@dataclass(frozen=True)
class StackConfig:
    """What to start, and where; `settings` and `environ` come from the CLI's edge."""

    settings: Settings  # ComfyUI's folder and arguments, log levels
    environ: Mapping[str, str] = field(default_factory=dict)  # what the children inherit
    data_dir: Path = Path(".dev")
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    project: str = "local-project"
    inbox_bucket: str = "inbox"
    outbox_bucket: str = "outbox"
    job_boots_comfyui: bool = False  # each execution boots its own ComfyUI, as on Cloud Run (slow)
    poll_interval_s: float = 0.25  # the notifier's listing interval


class DevStack:
    """The running parts, each reachable as an attribute once `start()` returned."""

    def __init__(self, config: StackConfig) -> None:
        self.config = replace(config, data_dir=config.data_dir.resolve())
        self.info: StackInfo | None = None
        self.comfyui: ComfyServer | None = None
        self.gcs: GcsEmulator | None = None
        self.run_api: RunApiStandin | None = None
        self.function: Child | None = None
        self.service: Child | None = None
        self.notifier: InboxNotifier | None = None
        self._exit = ExitStack()
        self._announced: set[str] = set()
        self._reported: set[str] = set()

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def start(self) -> DevStack:
        """Start every part, wait until each answers, then write DATA/stack.json. Call from the main thread."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything started, newest first (jobs before the storage and ComfyUI they use)."""
        self._exit.close()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check(self) -> None:
        """Report executions that started or ended; StackError when a part has stopped on its own."""
        for child in (self.function, self.service):
            if child is not None and child.returncode is not None:
                raise StackError(f"{child.name} stopped (exit code {child.returncode}); {child.describe_log()}")
        if self.gcs is not None and not self.gcs.running:
            raise StackError(f"the GCS emulator stopped; see {self.gcs.log_path}")
        if self.comfyui is not None and self.comfyui.state is State.FAILED:
            raise StackError(f"ComfyUI failed and was not restarted; its last lines:\n{self.comfyui.log_tail()}")
        self._report_executions()

    def components(self) -> list[tuple[str, str, str]]:
        """(part, address, note) for each part, for the CLI to print."""
        assert self.info is not None, "start() first"
        info, logs = self.info, self.log_dir
        attached = self.config.settings.comfyui_url is not None
        jobs = "each boots its own ComfyUI" if self.config.job_boots_comfyui else "attached to the ComfyUI above"
        return [
            (
                "GCS emulator",
                info.gcs,
                f"buckets {info.inbox_bucket}, {info.outbox_bucket}; data in {self.data_dir / 'gcs'}",
            ),
            (
                "ComfyUI",
                info.comfyui,
                "attached (COMFYUI_URL)" if attached else f"ours, on CPU; log {logs / 'comfyui.log'}",
            ),
            ("function", info.function, f"{FUNCTION_TARGET} from trigger/main.py; log {logs / 'function.log'}"),
            (
                "Cloud Run API",
                info.run_api,
                f"stand-in; jobs run as `worker-comfyui job`, {jobs}; log {logs / 'jobs.log'}",
            ),
            ("service", info.service, f"POST {info.service}/predict; log {logs / 'service.log'}"),
            ("notifier", f"gs://{info.inbox_bucket}", "object.finalized events to the function, as Eventarc"),
        ]

    # --- starting -------------------------------------------------------------------------------

    def _start(self) -> None:
        config = self.config
        _refuse_second_stack(self.data_dir)
        attached = config.settings.comfyui_url is not None
        ports = resolve_ports(replace(config.ports, comfyui=0) if attached else config.ports, config.host)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        comfy = config.settings if attached else self._comfyui_settings(ports)

        self.comfyui = self._keep(self._start_comfyui(comfy, install=not attached))  # boots meanwhile
        self.gcs = self._keep(
            GcsEmulator(
                self.data_dir / "gcs",
                buckets=[config.inbox_bucket, config.outbox_bucket],
                port=ports.gcs,
                host=config.host,
                project=config.project,
            ).start()
        )
        self.run_api = self._keep(self._start_run_api(ports.run_api, comfy))
        function_url, service_url = _url(config.host, ports.function), _url(config.host, ports.service)
        self.function = self._keep(self._start_function(ports.function))
        self.service = self._keep(self._start_service(ports.service, comfy))

        self.function.wait_http(function_url, timeout_s=60)
        self.comfyui.wait_ready()
        self.service.wait_http(f"{service_url}/healthz", timeout_s=120, ready=lambda status: status == 200)
        notifier = InboxNotifier(self.gcs.url, config.inbox_bucket, function_url, interval_s=config.poll_interval_s)
        self.notifier = self._keep(notifier.start())

        self.info = StackInfo(
            pid=os.getpid(),
            data_dir=str(self.data_dir),
            project=config.project,
            gcs=self.gcs.url,
            inbox_bucket=config.inbox_bucket,
            outbox_bucket=config.outbox_bucket,
            outbox_prefix="",
            comfyui=self.comfyui.base_url,
            function=function_url,
            run_api=self.run_api.url,
            service=service_url,
        )
        self.info.save(self.data_dir)
        self._exit.callback(StackInfo.remove, self.data_dir)

    def _keep(self, part: _Part) -> _Part:
        """Remember to stop a started part when the stack stops (in reverse order of starting)."""
        self._exit.callback(part.stop)
        return part

    def _start_comfyui(self, comfy: Settings, *, install: bool) -> ComfyServer:
        if install:
            log.info("checking the ComfyUI install at %s (installs it the first time)", comfy.comfyui_dir)
            install_comfyui(comfy.comfyui_dir, archive=comfy.comfyui_archive)
        return ComfyServer(comfy.comfyui()).start()

    def _start_run_api(self, port: int, comfy: Settings) -> RunApiStandin:
        config = self.config
        boots = config.job_boots_comfyui
        return RunApiStandin(
            jobs=[f"projects/{config.project}/locations/{REGION}/jobs/{JOB_NAME}"],
            port=port,
            host=config.host,
            launch=True,
            argv=[sys.executable, "-m", *(("job.devstack.task",) if boots else ("job", "job"))],
            base_env=self._job_env(comfy),
        ).start()

    def _start_function(self, port: int) -> Child:
        """functions-framework's own CLI serving trigger/, from its folder, as Cloud Functions runs it."""
        source = _trigger_source()
        argv = [
            sys.executable, "-m", "functions_framework", "--target", FUNCTION_TARGET, "--source", str(source),
            "--signature-type", "cloudevent", "--host", self.config.host, "--port", str(port),
        ]  # fmt: skip
        env = self._function_env()
        return Child("the function", argv, env=env, log_path=self.log_dir / "function.log", cwd=source.parent).start()

    def _start_service(self, port: int, comfy: Settings) -> Child:
        argv = [sys.executable, "-m", "job", "serve", "--host", self.config.host, "--port", str(port)]
        return Child("the service", argv, env=self._service_env(comfy), log_path=self.log_dir / "service.log").start()

    def _comfyui_settings(self, ports: Ports) -> Settings:
        """The dev ComfyUI: our child on loopback, its input, output and models under DATA/comfyui."""
        base = self.data_dir / "comfyui"
        for folder in ("models", "custom_nodes", "input", "output"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        args = f"--base-directory {shlex.quote(str(base))} {self.config.settings.comfyui_args}".strip()
        return self.config.settings.model_copy(
            update={
                "comfyui_url": None,
                "comfyui_host": self.config.host,
                "comfyui_port": ports.comfyui,
                "comfyui_args": args,
            }
        )

    def _common_env(self) -> dict[str, str]:
        env = {key: value for key, value in self.config.environ.items() if key not in _OWNED_VARS}
        assert self.gcs is not None
        env.update(self.gcs.env(), GOOGLE_CLOUD_PROJECT=self.config.project, PYTHONUNBUFFERED="1")
        return env

    def _function_env(self) -> dict[str, str]:
        """The function's variables (trigger/config.py), pointing it at the emulator and the stand-in."""
        assert self.run_api is not None
        return {
            **self._common_env(),
            "RUN_API_ENDPOINT": self.run_api.url,
            "REGION": REGION,
            "JOB_NAME": JOB_NAME,
            "OUTBOX_BUCKET": self.config.outbox_bucket,
            "OUTBOX_PREFIX": "",
        }

    def _job_env(self, comfy: Settings) -> dict[str, str]:
        """What every execution's task sees before the trigger's overrides (REQUEST_URI, OUTBOX_URI).

        JOB_MAX_RETRIES=0: the stand-in does not retry a failed task, so its first failure must
        write the error result.json that Cloud Run's last attempt would.
        """
        env = {
            **self._common_env(),
            "INBOX_BUCKET": self.config.inbox_bucket,
            "OUTBOX_BUCKET": self.config.outbox_bucket,
            "JOB_MAX_RETRIES": "0",
            "COMFYUI_DIR": str(comfy.comfyui_dir),
        }
        if self.config.job_boots_comfyui:
            env.update(COMFYUI_HOST=self.config.host, COMFYUI_ARGS=comfy.comfyui_args)  # the port: job/devstack/task.py
        else:
            env["COMFYUI_URL"] = comfy.comfyui().base_url
        return env

    def _service_env(self, comfy: Settings) -> dict[str, str]:
        return {
            **self._common_env(),
            "COMFYUI_URL": comfy.comfyui().base_url,
            "COMFYUI_DIR": str(comfy.comfyui_dir),
            "INBOX_BUCKET": self.config.inbox_bucket,
            "OUTBOX_BUCKET": self.config.outbox_bucket,
        }

    # --- watching ------------------------------------------------------------------------------

    def _report_executions(self) -> None:
        if self.run_api is None:
            return
        for execution in self.run_api.executions():
            short = execution.name.rsplit("/", 1)[-1]
            if execution.name not in self._announced:
                self._announced.add(execution.name)
                log.info(
                    "execution %s started: %s -> %s",
                    short,
                    execution.env.get("REQUEST_URI", "?"),
                    execution.env.get("OUTBOX_URI", "?"),
                )
            if execution.state is not ExecutionState.RUNNING and execution.name not in self._reported:
                self._reported.add(execution.name)
                took = (execution.completed - execution.created).total_seconds() if execution.completed else 0.0
                codes = ", ".join(str(code) for code in execution.exit_codes.values())
                level = logging.INFO if execution.state is ExecutionState.SUCCEEDED else logging.ERROR
                log.log(level, "execution %s %s in %.1f s (exit %s)", short, execution.state.value, took, codes)


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def _refuse_second_stack(data_dir: Path) -> None:
    """Two stacks on one data folder would share the emulator's files and stack.json."""
    with contextlib.suppress(StackNotRunning):
        running = StackInfo.load(data_dir)
        if running.pid != os.getpid():
            raise StackError(
                f"a dev stack (pid {running.pid}) already runs with data in {data_dir}/: use it "
                "(`worker-comfyui submit ...`), stop it (Ctrl-C in its terminal), or pass --data-dir"
            )
    StackInfo.remove(data_dir)  # whatever is left there names a stack that is gone


def _trigger_source() -> Path:
    """trigger/main.py, the function's source as deployed (the `trigger` package's folder)."""
    spec = importlib.util.find_spec("trigger")
    locations = list(spec.submodule_search_locations or []) if spec else []
    main = Path(locations[0]) / "main.py" if locations else None
    if main is None or not main.is_file():
        raise StackError("cannot find trigger/main.py: install the project from its checkout (pip install -e .)")
    return main
