"""Readiness for Cloud Run's startup probe: ComfyUI answers, and the warm-up (if any) has run.

`/healthz` turns 503 again whenever ComfyUI stops answering (crashed, restarting), so a probe
or a load balancer never sends work to an instance that cannot run it.
"""

from __future__ import annotations

from typing import Any

from job.comfyui.process import ComfyServer


class Health:
    """ComfyUI's state (from its supervisor) and the warm-up's: none, pending, running, done, failed."""

    def __init__(self, server: ComfyServer, *, warmup: bool) -> None:
        self.server = server
        self.warmup = "pending" if warmup else "none"
        self.warmup_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.server.ready and self.warmup in ("none", "done")

    def report(self) -> dict[str, Any]:
        detail = None
        if self.warmup == "failed":
            detail = f"the warm-up workflow (WARMUP_WORKFLOW) failed: {self.warmup_error}"
        elif not self.server.ready:
            detail = f"ComfyUI is {self.server.state.value}"
        elif self.warmup in ("pending", "running"):
            detail = "the warm-up workflow (WARMUP_WORKFLOW) has not finished yet"
        return {
            "status": "ok" if self.ready else "unavailable",
            "comfyui": self.server.state.value,
            "warmup": self.warmup,
            "detail": detail,
        }
