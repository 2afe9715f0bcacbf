"""Follow one queued prompt to its end: websocket events raced against /history polling.

The websocket gives progress and a prompt finish signal within milliseconds; /history is the
authority on the result and the safety net when the socket drops or goes silent. Every wait is
bounded by the run's deadline, after which the prompt is cancelled and RunTimeout raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from job.comfyui.client import ComfyClient
from job.comfyui.events import EventStream
from job.errors import ComfyCrashed, ComfyUnavailable, ExecutionFailed, RunTimeout, WorkerError

log = logging.getLogger(__name__)

_TRACEBACK_LINES = 12
_CANCEL_GRACE_S = 15.0
_FAST_POLL_S = 0.02


@dataclass
class Progress:
    """What the CLI's bar, the job's status.json and the service's /status show."""

    prompt_id: str
    state: str = "queued"  # queued | running | finished
    node: str | None = None
    class_type: str | None = None
    value: int = 0
    max: int = 0
    nodes_done: int = 0
    nodes_total: int = 0
    started_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state, "node": self.node, "class_type": self.class_type,
            "value": self.value, "max": self.max, "nodes_done": self.nodes_done, "nodes_total": self.nodes_total,
        }  # fmt: skip


ProgressCallback = Callable[[Progress], None]
LostCheck = Callable[[], str | None]


@dataclass
class PromptTracker:
    """Waits for one prompt; `lost()` names why ComfyUI is gone (crashed, restarted) or returns None."""

    client: ComfyClient
    stream: EventStream
    prompt_id: str
    workflow: dict[str, Any]
    deadline: float
    timeout_s: float
    poll_s: float
    lost: LostCheck
    on_progress: ProgressCallback | None = None
    cancel: threading.Event | None = None  # set by another thread: stop the prompt and give up
    progress: Progress = field(init=False)

    def __post_init__(self) -> None:
        self.progress = Progress(prompt_id=self.prompt_id, nodes_total=len(self.workflow))

    def wait(self) -> dict[str, Any]:
        """The prompt's /history entry once it succeeded; a typed error otherwise."""
        # With the socket up, its finish event triggers the one /history read a run needs; polling
        # at once would cost two requests per run, made while ComfyUI is busy executing.
        next_poll = time.monotonic() + (self.poll_s if self.stream.connected else 0.0)
        drops = self.stream.drops
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                self._cancel()
                raise RunTimeout(
                    f"the run passed its deadline of {self.timeout_s:g} s and was interrupted; "
                    "raise timeout_s in the request (or RUN_TIMEOUT_S), or make the workflow lighter"
                )
            if self.cancel is not None and self.cancel.is_set():
                self._cancel()
                raise ExecutionFailed(f"prompt {self.prompt_id} was cancelled: its caller went away", cancelled=True)
            if now >= next_poll or self.stream.drops != drops:
                drops = self.stream.drops
                entry = self._poll_history()
                if entry is not None:
                    return entry
                next_poll = time.monotonic() + self.poll_s
            event = self.stream.recv(max(min(next_poll, self.deadline) - time.monotonic(), 0.0))
            if event is not None and self._handle(event):
                next_poll = time.monotonic()  # finished: read the result now
            elif self.progress.state == "finished":
                next_poll = min(next_poll, time.monotonic() + _FAST_POLL_S)

    # --- websocket events ------------------------------------------------------------------------

    def _handle(self, event: dict[str, Any]) -> bool:
        """Update progress from one event; True when the prompt is known to have finished."""
        kind, data = event.get("type"), event.get("data") or {}
        if data.get("prompt_id") != self.prompt_id:
            return False
        p = self.progress
        if kind == "execution_start":
            p.state, p.started_at = "running", time.monotonic()
        elif kind == "execution_cached":
            p.nodes_done += len(data.get("nodes") or [])
        elif kind == "executing":
            if p.node is not None:
                p.nodes_done += 1  # ComfyUI hands over to the next node only when this one is done
            if data.get("node") is None:
                p.state, p.node = "finished", None
                return True
            p.state, p.node, p.value, p.max = "running", str(data["node"]), 0, 0
            p.class_type = self.workflow.get(p.node, {}).get("class_type")
        elif kind == "progress":
            p.value, p.max = int(data.get("value", 0)), int(data.get("max", 0))
            p.node = str(data.get("node") or p.node)
        elif kind == "execution_success":
            p.state = "finished"  # history is written just after this; poll for it shortly
        elif kind == "execution_error":
            raise execution_failed(data)
        elif kind == "execution_interrupted":
            p.state = "finished"
            return True
        else:
            return False
        if self.on_progress is not None:
            self.on_progress(p)
        return False

    # --- /history, the authority -----------------------------------------------------------------

    def _poll_history(self) -> dict[str, Any] | None:
        try:
            entry = self.client.history(self.prompt_id)
            if entry is None:
                if self.client.queue().holds(self.prompt_id):
                    return None
                entry = self.client.history(self.prompt_id)  # it may have finished between the two reads
                if entry is None:
                    raise ComfyCrashed(
                        f"prompt {self.prompt_id} vanished from ComfyUI (it restarted or crashed mid-run)"
                    )
        except ComfyCrashed:
            raise
        except ComfyUnavailable as exc:
            reason = self.lost()
            if reason:
                raise ComfyCrashed(f"ComfyUI {reason} while running prompt {self.prompt_id}") from exc
            log.warning("history poll failed (%s); retrying", exc)
            return None
        return _result_of(entry)

    def _cancel(self) -> None:
        """Dequeue the prompt if it is still waiting, interrupt it if running, and let it stop."""
        try:
            queue = self.client.queue()
            if self.prompt_id in queue.pending:
                self.client.delete_queued(self.prompt_id)
                return
            self.client.interrupt(self.prompt_id)
            stop_by = time.monotonic() + _CANCEL_GRACE_S
            while time.monotonic() < stop_by and self.client.queue().holds(self.prompt_id):
                time.sleep(0.05)
        except WorkerError as exc:
            log.warning("could not cancel prompt %s: %s", self.prompt_id, exc)


def _result_of(entry: dict[str, Any]) -> dict[str, Any]:
    status = entry.get("status") or {}
    if status.get("status_str", "success") == "success":
        return entry
    for name, data in status.get("messages") or []:
        if name == "execution_error":
            raise execution_failed(data)
        if name == "execution_interrupted":
            raise ExecutionFailed(
                f"the run was interrupted at node {data.get('node_id')} ({data.get('node_type')}) by someone else",
                node_id=data.get("node_id"),
                class_type=data.get("node_type"),
            )
    raise ExecutionFailed(f"ComfyUI reports the run as {status.get('status_str')!r} without an error message")


def execution_failed(data: dict[str, Any]) -> ExecutionFailed:
    """ExecutionFailed from an `execution_error` payload: node, class, message and traceback tail."""
    node_id, class_type = data.get("node_id"), data.get("node_type")
    exc_type, message = data.get("exception_type", "Exception"), data.get("exception_message", "").strip()
    traceback = "".join(data.get("traceback") or []).splitlines()[-_TRACEBACK_LINES:]
    return ExecutionFailed(
        f"node {node_id} ({class_type}) failed: {exc_type}: {message}",
        node_errors={str(node_id): {"class_type": class_type, "errors": [{"type": exc_type, "message": message}]}},
        node_id=node_id,
        class_type=class_type,
        exception_type=exc_type,
        traceback=traceback,
    )
