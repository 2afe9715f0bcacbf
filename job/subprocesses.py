"""Child processes that never outlive us: one way to tie them to their parent and to stop them.

ComfyUI, the dev stack's parts and the job tasks the Admin API stand-in launches all start in their
own session (process group), so a stop reaches their grandchildren too; and SIGTERM unwinds our
own process, so its `finally` blocks stop them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` (and ComfyUI's shutdown) runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """`preexec_fn`: SIGTERM this child when the *thread* that spawned it exits (Linux only).

    Spawn from a thread that lives as long as the child should (the main thread, a supervisor loop).
    """
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_group(process: subprocess.Popen[Any], grace_s: float = 10.0, *, name: str = "child") -> None:
    """SIGTERM the child's process group, SIGKILL whatever is left after `grace_s`; safe to call twice."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("%s ignored SIGTERM for %g s; killing it", name, grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever is left in the group, leader or grandchild
    process.wait()
