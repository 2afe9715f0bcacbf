"""Follow one queued prompt to its end: websocket events raced against /history polling.

The websocket gives progress, the outputs (`executed`) and the finish (`execution_success`) within
milliseconds. When the socket saw the whole run, those events are the result: reading /history
instead would wait out ComfyUI's post-prompt garbage collection, which holds its server for a
noticeable time after a process's first prompt (docs/development.md). /history is the
authority whenever the socket dropped or went silent. Every wait is bounded by the run's
deadline, after which the prompt is cancelled and RunTimeout raised at once: ComfyUI checks its
interrupt flag only between nodes, so a node that cannot be interrupted may run on for long after;
such a prompt goes to `on_overrun` (job/comfyui/overrun.py) rather than holding the answer back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from job.comfyui.client import ComfyClient
from job.comfyui.websocket import Subscription
from job.errors import (
    MESSAGE_LIMIT,
    ComfyCrashed,
    ComfyUnavailable,
    ExecutionFailed,
    RunTimeout,
    WorkerError,
    clip,
    seconds,
)

log = logging.getLogger(__name__)

_TRACEBACK_LINES = 12
# How long a cancelled prompt gets to stop before the run answers anyway: an interrupt lands at the
# next node, which is soon for most; a run answers within a second of its deadline.
_STOP_GRACE_S = 0.5
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
OverrunHandler = Callable[[str, str], None]  # (prompt_id, "passed its deadline of 2 s"): ComfyUI runs it on


@dataclass
class PromptTracker:
    """Waits for one prompt; `lost()` names why ComfyUI is gone (crashed, restarted) or returns None."""

    client: ComfyClient
    events: Subscription
    prompt_id: str
    workflow: dict[str, Any]
    deadline: float
    timeout_s: float
    poll_s: float
    lost: LostCheck
    on_progress: ProgressCallback | None = None
    cancel: threading.Event | None = None  # set by another thread: stop the prompt and give up
    output_nodes: frozenset[str] = frozenset()  # the workflow's output nodes; empty: wait for the prompt's end
    on_overrun: OverrunHandler | None = None  # a cancelled prompt that did not stop within _STOP_GRACE_S
    progress: Progress = field(init=False)
    _outputs: dict[str, Any] = field(init=False, default_factory=dict)  # node id -> its `executed` output
    _reported: set[str] = field(init=False, default_factory=set)  # nodes that sent `executed`
    _messages: list[tuple[str, dict[str, Any]]] = field(init=False, default_factory=list)  # timestamped, as in /history
    _blind_poll_s: float = field(init=False, default=_FAST_POLL_S)  # the /history interval while the socket can't vouch

    def __post_init__(self) -> None:
        self.progress = Progress(prompt_id=self.prompt_id, nodes_total=len(self.workflow))

    def wait(self) -> dict[str, Any]:
        """The prompt's /history entry (or one built from its events) once it succeeded; a typed error otherwise."""
        # With the socket up, /history is read only on a drop, a finish the socket cannot vouch for,
        # or every poll_s as a safety net; polling at once would load ComfyUI while it executes.
        next_poll = time.monotonic() + (self.poll_s if self.events.connected else 0.0)
        drops = self.events.drops
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                deadline = seconds(self.timeout_s)
                self._cancel(f"passed its deadline of {deadline}")
                raise RunTimeout(
                    f"the run passed its deadline of {deadline} and was interrupted; "
                    "raise timeout_s in the request (or RUN_TIMEOUT_S), or make the workflow lighter"
                )
            if self.cancel is not None and self.cancel.is_set():
                self._cancel("was cancelled")  # its caller went away, or the instance is stopping
                raise ExecutionFailed(f"prompt {self.prompt_id} was cancelled: its caller went away", cancelled=True)
            if now >= next_poll or self.events.drops != drops:
                drops = self.events.drops
                entry = self._poll_history()
                if entry is not None:
                    return entry
                next_poll = time.monotonic() + self._poll_interval()
            event = self.events.recv(max(min(next_poll, self.deadline) - time.monotonic(), 0.0))
            if event is None:
                if self.progress.state == "finished":
                    next_poll = min(next_poll, time.monotonic() + _FAST_POLL_S)
                continue
            finished = self._handle(event)
            if self.events.complete and (event.get("type") == "execution_success" or self._outputs_done()):
                return self._entry_from_events()
            if finished:
                next_poll = time.monotonic()  # read the result now

    # --- websocket events ------------------------------------------------------------------------

    def _handle(self, event: dict[str, Any]) -> bool:
        """Update progress from one event; True when the prompt is known to have finished."""
        kind, data = event.get("type"), event.get("data") or {}
        if data.get("prompt_id") != self.prompt_id:
            return False
        if "timestamp" in data:
            self._messages.append((str(kind), data))
        p = self.progress
        if kind == "execution_start":
            p.state, p.started_at = "running", time.monotonic()
        elif kind == "execution_cached":
            p.nodes_done += len(data.get("nodes") or [])
        elif kind == "executed":
            self._reported.add(str(data.get("node")))
            if data.get("output") is not None:  # as /history: a cached node without UI output is left out
                self._outputs[str(data.get("node"))] = data["output"]
            return False
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
            p.state = "finished"
            if self.on_progress is not None:
                self.on_progress(p)
            return True  # the caller takes the result from the events, or from /history if any were lost
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

    def _poll_interval(self) -> float:
        """poll_s while the socket vouches for the run (a safety net only); while it cannot, /history
        is the only way to learn of the end, so polls start fast and double up to poll_s."""
        if self.events.complete:
            return self.poll_s
        self._blind_poll_s = min(self._blind_poll_s * 2, self.poll_s)
        return self._blind_poll_s

    def _outputs_done(self) -> bool:
        """Every output node reported its files: ComfyUI runs nothing after them.

        Finishing here rather than at `execution_success` matters: ComfyUI sends that only after its
        post-prompt garbage collection (on a process's first prompt and after 10 s idle), which
        takes a while. An output node that reports no UI output keeps this False; the end event decides.
        """
        return bool(self.output_nodes) and self.output_nodes <= self._reported

    def _entry_from_events(self) -> dict[str, Any]:
        """What /history would answer, assembled from a run whose every event we saw."""
        return {
            "outputs": self._outputs,
            "status": {"status_str": "success", "completed": True, "messages": self._messages},
            "finished_at": time.time(),  # when no `execution_success` came (yet), the end by our clock
        }

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

    def _cancel(self, reason: str) -> None:
        """Dequeue the prompt if it is still waiting, interrupt it if running, give it _STOP_GRACE_S to
        stop, and hand it to `on_overrun` if it runs on: the answer never waits for a node to end."""
        try:
            if self.prompt_id in self.client.queue().pending:
                self.client.delete_queued(self.prompt_id)
            # Also after a dequeue: it may have started in between (ComfyUI ignores an interrupt
            # for a prompt it is not running).
            self.client.interrupt(self.prompt_id)
            stop_by = time.monotonic() + _STOP_GRACE_S
            while self.client.queue().holds(self.prompt_id):
                if time.monotonic() >= stop_by:
                    if self.on_overrun is not None:
                        self.on_overrun(self.prompt_id, reason)
                    return
                time.sleep(_FAST_POLL_S)
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
    """ExecutionFailed from an `execution_error` payload: node, class, exception type and message.

    The traceback (ComfyUI's files and lines) goes to the log, under the error's id; the body never has it.
    """
    node_id, class_type = data.get("node_id"), data.get("node_type")
    exc_type, message = data.get("exception_type", "Exception"), str(data.get("exception_message", "")).strip()
    traceback = "".join(data.get("traceback") or []).splitlines()[-_TRACEBACK_LINES:]
    failed = ExecutionFailed(
        f"node {node_id} ({class_type}) failed: {exc_type}: {message}",
        node_errors={str(node_id): {"class_type": class_type, "errors": [{"type": exc_type, "message": message}]}},
        node_id=node_id,
        class_type=class_type,
        exception_type=exc_type,
    )
    log.error(
        "node %s (%s) raised %s [error %s]: %s\n%s",
        node_id,
        class_type,
        exc_type,
        failed.id,
        clip(message, MESSAGE_LIMIT),
        "\n".join(traceback),
        extra={"fields": {"error_id": failed.id, "node_id": node_id, "class_type": class_type}},
    )
    return failed
