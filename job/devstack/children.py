"""A child process of the dev stack: its own process group, dead when we die, its output in a file.

Each child is spawned from the main thread with PR_SET_PDEATHSIG, so the kernel sends it SIGTERM if
the dev process dies in any way (SIGKILL included); `stop()` signals the whole process group, so a
server's workers (gunicorn's, say) go with it.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from job.subprocesses import die_with_parent, stop_group

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A part of the dev stack could not start or stopped; the message says which, why, and what to do."""


class Child:
    """One named subprocess whose stdout and stderr go to `log_path`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """None while it runs (or before it started), else its exit code."""
        return self._process.poll() if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Child:
        """Spawn it. Call from a thread that outlives the child (the main thread): see the docstring."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        log.debug("%s: pid %d: %s", self.name, self._process.pid, " ".join(self.argv))
        return self

    def wait_http(self, url: str, *, timeout_s: float, ready: Callable[[int], bool] = lambda status: True) -> None:
        """Block until GET `url` answers a status `ready` accepts; StackError if it exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        with httpx.Client(timeout=2.0) as http:
            while True:
                if not self.running:
                    raise StackError(f"{self.name} exited with code {self.returncode}; {self.describe_log()}")
                with contextlib.suppress(httpx.HTTPError):
                    if ready(http.get(url).status_code):
                        return
                if time.monotonic() > deadline:
                    raise StackError(f"{self.name} did not answer {url} within {timeout_s:g} s; {self.describe_log()}")
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def describe_log(self) -> str:
        tail = self.log_tail()
        return f"its log ({self.log_path}) ends with:\n{tail}" if tail else f"its log ({self.log_path}) is empty"

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace_s`; safe to call twice."""
        process = self._process
        if process is None:
            return
        stop_group(process, grace_s, name=self.name)
