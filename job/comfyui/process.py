"""ComfyUI as a supervised child process, or an already-running ComfyUI we attach to.

One supervisor thread owns the child: it spawns it, forwards its log, waits on it, and on a crash
restarts it with backoff. Spawning from that long-lived thread matters: the child asks the kernel
(PR_SET_PDEATHSIG) for SIGTERM when its spawning thread dies, so even a SIGKILLed parent leaves no
orphan behind. `generation` counts boots, so a runner can tell that the ComfyUI it queued on is gone.
"""

from __future__ import annotations

import enum
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from job.comfyui.folders import output_folders
from job.comfyui.mount import write_extra_model_paths
from job.errors import ComfyUnavailable
from job.settings import Settings
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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.comfyui_base_url
        self.managed = settings.comfyui_url is None
        self.generation = 0
        self._state = State.STOPPED
        self._changed = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._prerequisites: list[Future[object]] = []
        self.folders: dict[str, Path] | None = None  # a managed child's output and temp folders, on our disk
        self.boot_s: float | None = None  # the last boot of our child: spawn to first answer
        self._spawned_at = 0.0

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ComfyServer:
        """Start the child (or begin watching the attached server); returns without waiting for it.

        With MODELS_MOUNT, extra_model_paths.yaml is written first: ComfyUI reads it only at start.
        """
        if self._supervisor is not None:
            return self
        if self.managed and self.settings.models_mount is not None:
            write_extra_model_paths(self.settings.models_mount, self.settings.comfyui_dir)
        self._stopping.clear()
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
        limit = timeout_s if timeout_s is not None else self.settings.comfyui_boot_timeout_s
        deadline = time.monotonic() + limit
        with self._changed:
            while self._state is not State.READY:
                if self._state in (State.FAILED, State.STOPPED):
                    raise ComfyUnavailable(f"ComfyUI is {self._state.value}:\n{self.log_tail()}".rstrip())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ComfyUnavailable(
                        f"ComfyUI did not answer at {self.base_url} within {limit:.0f} s "
                        f"(raise COMFYUI_BOOT_TIMEOUT_S if it is just slow):\n{self.log_tail()}".rstrip()
                    )
                self._changed.wait(min(remaining, 0.5))
        for prerequisite in self._prerequisites:
            try:
                prerequisite.result(timeout=max(deadline - time.monotonic(), 0.0))
            except FutureTimeout:
                raise ComfyUnavailable(f"ComfyUI's preparation (models) did not finish within {limit:.0f} s") from None

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
            if not self.settings.comfyui_restart or self._state is State.STARTING:
                # It never came up: restarting would only repeat the same failure.
                self._set_state(State.FAILED)
                return
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            self._set_state(State.RESTARTING)
            log.warning("restarting ComfyUI in %.0f s", backoff)
            if self._stopping.wait(backoff):
                return

    def _spawn(self) -> subprocess.Popen[str]:
        main = self.settings.comfyui_dir / "main.py"
        if not main.is_file():
            raise OSError(
                f"no ComfyUI at {self.settings.comfyui_dir}; run `worker-comfyui comfyui install` or set COMFYUI_DIR"
            )
        command = [
            sys.executable, "-u", str(main),
            "--listen", self.settings.comfyui_host,
            "--port", str(self.settings.comfyui_port),
            "--verbose", self.settings.comfy_log_level,
            "--disable-auto-launch",
            *(() if has_cuda() else ("--cpu",)),
            *shlex.split(self.settings.comfyui_args),
        ]  # fmt: skip
        self.generation += 1
        self.folders = output_folders(self.settings.comfyui_dir, command[3:])
        log.info("starting ComfyUI (boot %d): %s", self.generation, " ".join(command))
        self._proc = subprocess.Popen(
            command,
            cwd=self.settings.comfyui_dir,
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
                if _answers(http, self.base_url):
                    self.boot_s = time.monotonic() - self._spawned_at
                    log.info(
                        "ComfyUI ready at %s in %.1f s (boot %d, pid %d)",
                        self.base_url, self.boot_s, self.generation, proc.pid,
                    )  # fmt: skip
                    self._set_state(State.READY)
                    return
                # A steady, short interval: a refused connection costs microseconds, while a
                # backoff to 1 s made every cold start notice readiness ~0.5 s late on average.
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

    def _set_state(self, state: State) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()


def _answers(http: httpx.Client, base_url: str) -> bool:
    import httpx  # loaded already by the poller that calls this

    try:
        return http.get(f"{base_url}/system_stats").status_code == 200
    except httpx.HTTPError:
        return False
