"""ComfyUI as a supervised child process, or an already-running ComfyUI we attach to.

One supervisor thread owns the child: it spawns it, forwards its log, waits on it, and on a crash
restarts it with backoff. Spawning from that long-lived thread matters: the child asks the kernel
(PR_SET_PDEATHSIG) for SIGTERM when its spawning thread dies, so even a SIGKILLed parent leaves no
orphan behind. `generation` counts boots, so a runner can tell that the ComfyUI it queued on is gone.

Our ComfyUI is ours: a port that something already answers on (or holds) is refused before the
spawn, and readiness counts only while our child is alive and the server answering /system_stats
reports our child's command line (`system.argv`). Otherwise a second worker given the port of a
running ComfyUI would take that foreign server for its own while its child failed to bind.
"""

from __future__ import annotations

import enum
import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from job.comfyui.compat import server_argv
from job.comfyui.config import ComfyConfig
from job.comfyui.folders import input_folder, output_folders
from job.comfyui.mount import write_extra_model_paths
from job.errors import ComfyUnavailable, seconds
from job.subprocesses import die_with_parent, stop_group

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
comfy_log = logging.getLogger("comfyui")

_TAIL_LINES = 60
_STOP_GRACE_S = 10.0
_READY_POLL_S = 0.05


class State(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPING = "stopping"


def has_cuda() -> bool:
    """True when an NVIDIA driver is present, without importing torch into this process."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


class ComfyServer:
    """A ComfyUI the runner can use: our own child (managed) or one at COMFYUI_URL (attached)."""

    def __init__(self, config: ComfyConfig) -> None:
        self.config = config
        self.base_url = config.base_url
        self.managed = config.url is None
        self.generation = 0
        self._state = State.STOPPED
        self._changed = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._prerequisites: list[Future[object]] = []
        self.folders: dict[str, Path] | None = None  # a managed child's output and temp folders, on our disk
        self.input_folder: Path | None = None  # and its input folder, where each run's uploads get a subfolder
        self.boot_s: float | None = None  # the last boot of our child: spawn to first answer
        self._spawned_at = 0.0
        self._argv: list[str] = []  # our child's command line as ComfyUI reports it (main.py first)
        self._failure: str | None = None  # why it failed, when we know better than its log

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ComfyServer:
        """Start the child (or begin watching the attached server); returns without waiting for it.

        With MODELS_MOUNT, extra_model_paths.yaml is written first: ComfyUI reads it only at start.
        """
        if self._supervisor is not None:
            return self
        if self.managed and self.config.models_mount is not None:
            write_extra_model_paths(self.config.models_mount, self.config.dir)
        self._stopping.clear()
        self._failure = None
        target = self._supervise if self.managed else self._watch_attached
        self._supervisor = threading.Thread(target=target, name="comfyui-supervisor", daemon=True)
        self._set_state(State.STARTING)
        self._supervisor.start()
        return self

    def require(self, prerequisite: Future[object]) -> None:
        """Work (a model download, say) that must finish before ComfyUI counts as ready; its error is ours."""
        self._prerequisites.append(prerequisite)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until ComfyUI answers HTTP and every prerequisite is done; fail at once if it exits first."""
        limit = timeout_s if timeout_s is not None else self.config.boot_timeout_s
        deadline = time.monotonic() + limit
        with self._changed:
            while self._state is not State.READY:
                if self._state is State.FAILED and self._failure is not None:
                    raise ComfyUnavailable(self._failure)
                if self._state in (State.FAILED, State.STOPPED):
                    raise ComfyUnavailable(
                        f"ComfyUI is not running ({self._state.value}); its last lines:\n{self.log_tail()}".rstrip()
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ComfyUnavailable(
                        f"ComfyUI did not answer at {self.base_url} within {seconds(limit)} "
                        f"(raise COMFYUI_BOOT_TIMEOUT_S if it is just slow):\n{self.log_tail()}".rstrip()
                    )
                self._changed.wait(min(remaining, 0.5))
        for prerequisite in self._prerequisites:
            try:
                prerequisite.result(timeout=max(deadline - time.monotonic(), 0.0))
            except FutureTimeout:
                raise ComfyUnavailable(
                    f"ComfyUI's preparation (models) did not finish within {seconds(limit)}"
                ) from None

    def stop(self) -> None:
        """Terminate the child (SIGTERM to its process group, then SIGKILL) and the supervisor."""
        self._stopping.set()
        self._set_state(State.STOPPING)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            stop_group(proc, _STOP_GRACE_S, name="ComfyUI")
        if self._supervisor is not None:
            self._supervisor.join(timeout=_STOP_GRACE_S + 5)
            self._supervisor = None
        self._set_state(State.STOPPED)

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what others ask -------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def ready(self) -> bool:
        """ComfyUI answers and its prerequisites finished without error."""
        return self._state is State.READY and all(p.done() and p.exception() is None for p in self._prerequisites)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_tail(self) -> str:
        """The last lines ComfyUI printed, for error messages."""
        return "\n".join(self._tail)

    # --- the supervisor --------------------------------------------------------------------------

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            taken = _port_taken(self.config.host, self.config.port)
            if taken is not None:
                self._fail(
                    f"COMFYUI_PORT {self.config.port} on {self.config.host} is taken ({taken}), so a ComfyUI "
                    "started there would not be the one answering; set COMFYUI_PORT to a free port, or "
                    f"COMFYUI_URL=http://{self.config.host}:{self.config.port} to attach to the ComfyUI there"
                )
                return
            try:
                proc = self._spawn()
            except OSError as exc:
                self._tail.append(f"could not start ComfyUI: {exc}")
                self._set_state(State.FAILED)
                return
            ready_thread = threading.Thread(target=self._poll_until_ready, args=(proc,), daemon=True)
            ready_thread.start()
            self._forward_output(proc)
            code = proc.wait()
            if self._stopping.is_set():
                return
            log.error("ComfyUI exited with code %s; last lines:\n%s", code, self.log_tail())
            if self._state is State.FAILED:
                return  # failed on purpose (not our server answering): restarting would meet it again
            if not self.config.restart or self._state is State.STARTING:
                # It never came up: restarting would only repeat the same failure.
                self._set_state(State.FAILED)
                return
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            self._set_state(State.RESTARTING)
            log.warning("restarting ComfyUI in %.0f s", backoff)
            if self._stopping.wait(backoff):
                return

    def _spawn(self) -> subprocess.Popen[str]:
        main = self.config.dir / "main.py"
        if not main.is_file():
            raise OSError(f"no ComfyUI at {self.config.dir}; run `worker-comfyui comfyui install` or set COMFYUI_DIR")
        command = [
            sys.executable, "-u", str(main),
            "--listen", self.config.host,
            "--port", str(self.config.port),
            "--verbose", self.config.log_level,
            "--disable-auto-launch",
            *(() if has_cuda() else ("--cpu",)),
            *shlex.split(self.config.args),
        ]  # fmt: skip
        self.generation += 1
        self._argv = command[2:]  # ComfyUI's sys.argv: main.py and its arguments
        self.folders = output_folders(self.config.dir, command[3:])
        self.input_folder = input_folder(self.config.dir, command[3:])
        log.info("starting ComfyUI (boot %d): %s", self.generation, " ".join(command))
        self._proc = subprocess.Popen(
            command,
            cwd=self.config.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
            preexec_fn=die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._spawned_at = time.monotonic()
        self._set_state(State.STARTING)
        return self._proc

    def _forward_output(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                self._tail.append(line)
                comfy_log.info("[comfyui] %s", line)

    def _poll_until_ready(self, proc: subprocess.Popen[str]) -> None:
        import httpx  # here, after the spawn: a job task starts ComfyUI before its heavier imports

        with httpx.Client(timeout=2.0) as http:
            while proc.poll() is None and not self._stopping.is_set():
                stats = _system_stats(http, self.base_url)
                argv = server_argv(stats) if stats is not None else None
                if argv is not None and argv != self._argv:
                    self._fail(
                        f"another server answers at {self.base_url} in our ComfyUI's place (its command line "
                        f"is not the one we started); set COMFYUI_PORT to a port nothing else uses"
                    )
                    stop_group(proc, _STOP_GRACE_S, name="ComfyUI")
                    return
                if stats is not None and proc.poll() is None:  # our child, alive, and the one answering
                    self.boot_s = time.monotonic() - self._spawned_at
                    log.info(
                        "ComfyUI ready at %s in %.1f s (boot %d, pid %d)",
                        self.base_url, self.boot_s, self.generation, proc.pid,
                    )  # fmt: skip
                    self._set_state(State.READY)
                    return
                # A steady, short interval: a refused connection costs microseconds, while a
                # backoff to 1 s made every cold start notice readiness late (docs/development.md).
                time.sleep(_READY_POLL_S)

    def _watch_attached(self) -> None:
        """Attached mode: ready while the server answers, unavailable while it does not."""
        import httpx

        delay = 0.05
        with httpx.Client(timeout=2.0) as http:
            while not self._stopping.is_set():
                if _answers(http, self.base_url):
                    if self._state is not State.READY:
                        self.generation += 1
                        log.info("attached to ComfyUI at %s", self.base_url)
                        self._set_state(State.READY)
                    delay = 2.0
                elif self._state is State.READY:
                    log.warning("ComfyUI at %s stopped answering", self.base_url)
                    self._set_state(State.RESTARTING)
                    delay = 0.05
                self._stopping.wait(delay)
                delay = min(delay * 1.5, 2.0)

    def _fail(self, reason: str) -> None:
        """FAILED, with `reason` as what wait_ready says (and the log)."""
        log.error("%s", reason)
        self._tail.append(reason)
        self._failure = reason
        self._set_state(State.FAILED)

    def _set_state(self, state: State) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()


def _answers(http: httpx.Client, base_url: str) -> bool:
    return _system_stats(http, base_url) is not None


def _system_stats(http: httpx.Client, base_url: str) -> dict[str, Any] | None:
    """GET /system_stats as JSON, or None while nothing (or nothing like ComfyUI) answers."""
    import httpx  # loaded already by the poller that calls this

    try:
        response = http.get(f"{base_url}/system_stats")
        stats = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return stats if isinstance(stats, dict) else None


def _port_taken(host: str, port: int) -> str | None:
    """Why a child could not have `host:port` to itself (something answers, or holds it), or None."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return "something already answers there"
    except OSError:
        pass
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError:
        return None  # an address we cannot resolve: ComfyUI's own bind will say so
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ComfyUI binds: TIME_WAIT is no owner
        try:
            probe.bind(address)
        except OSError as exc:
            return f"it is bound already: {exc.strerror}"
    return None
