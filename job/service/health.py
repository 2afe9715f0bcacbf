"""Readiness for Cloud Run's startup probe: ComfyUI answers, and the warm-up (if any) has run on it.

`/healthz` turns 503 again whenever ComfyUI stops answering (crashed, restarting), and stays 503
after a restart until the warm-up has run on the new ComfyUI too, so a probe or a load balancer
never sends work to an instance that cannot run it, or that would load its models on a user's time.
It is 503 too while ComfyUI still finishes a prompt whose run is over (a node it could not
interrupt at the deadline: job/comfyui/overrun.py), since /predict refuses new work meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from job.comfyui.overrun import Overrun
from job.comfyui.process import ComfyServer

if TYPE_CHECKING:
    from job.service.shutdown import Shutdown


class Health:
    """ComfyUI's state (from its supervisor) and the warm-up's: none, pending, running, done, failed."""

    def __init__(
        self,
        server: ComfyServer,
        *,
        warmup: bool,
        shutdown: Shutdown | None = None,
        finishing: Callable[[], Overrun | None] | None = None,
    ) -> None:
        self.server = server
        self.shutdown = shutdown
        self.finishing = finishing or (lambda: None)  # the prompt ComfyUI runs past its run's end, if any
        self.warmup = "pending" if warmup else "none"
        self.warmup_error: str | None = None
        self.warmed_generation: int | None = None  # the ComfyUI boot the last successful warm-up ran on

    @property
    def warm(self) -> bool:
        """No warm-up is configured, or it ran on the ComfyUI that runs now."""
        return self.warmup == "none" or (self.warmup == "done" and self.warmed_generation == self.server.generation)

    @property
    def stopping(self) -> bool:
        return self.shutdown is not None and self.shutdown.draining.is_set()

    @property
    def ready(self) -> bool:
        return self.server.ready and self.warm and not self.stopping and self.finishing() is None

    def report(self) -> dict[str, Any]:
        detail = None
        overrun = self.finishing()
        if self.stopping:
            detail = "the instance is shutting down (SIGTERM)"
        elif overrun is not None:
            detail = f"{overrun.describe()}; new requests get 503 until it is done"
        elif self.warmup == "failed":
            detail = f"the warm-up workflow (WARMUP_WORKFLOW) failed: {self.warmup_error}"
        elif not self.server.ready:
            detail = f"ComfyUI is {self.server.state.value}"
        elif not self.warm:
            detail = "the warm-up workflow (WARMUP_WORKFLOW) has not finished on this ComfyUI yet"
        return {
            "status": "ok" if self.ready else "unavailable",
            "comfyui": self.server.state.value,
            "warmup": self.warmup,
            "detail": detail,
        }
