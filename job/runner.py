"""The engine: one workflow in, its output files out, on a ComfyUI we supervise or attach to.

The job, the /predict service and the CLI all run workflows through `Runner.run`. A runner keeps
one websocket (job.comfyui.events) and queues each run under a prompt_id of its own choosing, so
the events and outputs of one run never mix with another's.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from job.comfyui.client import ComfyClient
from job.comfyui.events import EventHub
from job.comfyui.folders import local_path
from job.comfyui.outputs import FileRef, OutputFile, file_refs
from job.comfyui.process import ComfyServer, State
from job.comfyui.tracker import ProgressCallback, PromptTracker
from job.errors import WorkerError
from job.logs import prompt_id as prompt_id_var
from job.request import check_input_name
from job.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Timings:
    queue_s: float = 0.0
    execution_s: float = 0.0
    total_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "queue_s": round(self.queue_s, 3),
            "execution_s": round(self.execution_s, 3),
            "total_s": round(self.total_s, 3),
        }


@dataclass
class RunResult:
    prompt_id: str
    outputs: dict[str, Any]
    files: list[OutputFile]
    timings: Timings = field(default_factory=Timings)


class Runner:
    """Runs workflows on one ComfyUI. Safe to share between threads."""

    def __init__(self, server: ComfyServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self.client = ComfyClient(server.base_url)
        self.events = EventHub(
            self.client.ws_url,
            attempts=settings.websocket_reconnect_attempts,
            delay_s=settings.websocket_reconnect_delay_s,
            trace=settings.websocket_trace,
        )

    def close(self) -> None:
        self.events.close()
        self.client.close()

    def run(
        self,
        workflow: dict[str, Any],
        *,
        inputs: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        include_temp: bool = False,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Upload inputs, queue, follow to the end, fetch every output file. Raises WorkerError.

        Setting `cancel` (from another thread) dequeues or interrupts the prompt and ends the run.
        """
        started = time.monotonic()
        timeout_s = timeout_s or self.settings.run_timeout_s
        deadline = started + timeout_s
        inputs = {check_input_name(name): data for name, data in (inputs or {}).items()}  # all, before any upload
        self.server.wait_ready(timeout_s)
        generation = self.server.generation
        for name, data in inputs.items():
            self.client.upload_image(name, data)

        output_nodes = self._output_nodes(workflow)
        # Subscribed before queueing, so no event can come first; /history covers a socket that is down.
        with self.events.subscribe(uuid.uuid4().hex) as events:
            queued_at = time.time()
            prompt_id = self.client.queue_prompt(workflow, events.client_id, events.prompt_id)
            if prompt_id != events.prompt_id:
                self.events.rekey(events, prompt_id)
            token = prompt_id_var.set(prompt_id)
            try:
                log.info("queued prompt %s (%d nodes)", prompt_id, len(workflow))
                tracker = PromptTracker(
                    client=self.client,
                    events=events,
                    prompt_id=prompt_id,
                    workflow=workflow,
                    deadline=deadline,
                    timeout_s=timeout_s,
                    poll_s=self.settings.history_poll_s,
                    lost=lambda: self._lost(generation),
                    on_progress=on_progress,
                    cancel=cancel,
                    output_nodes=output_nodes,
                )
                entry = tracker.wait()
                refs = file_refs(entry.get("outputs") or {}, include_temp=include_temp)
                # ComfyUI lists outputs in execution order, which varies between runs; the
                # workflow's own node order does not.
                order = {node_id: index for index, node_id in enumerate(workflow)}
                files = self._fetch(sorted(refs, key=lambda ref: order.get(ref.node_id, len(order))))
                timings = _timings(entry, queued_at, started)
                log.info(
                    "prompt %s done: %d file(s)",
                    prompt_id,
                    len(files),
                    extra={"fields": {"timings": timings.as_dict()}},
                )
                return RunResult(prompt_id=prompt_id, outputs=entry.get("outputs") or {}, files=files, timings=timings)
            finally:
                prompt_id_var.reset(token)

    def _output_nodes(self, workflow: dict[str, Any]) -> frozenset[str]:
        """The workflow's output nodes, by their class; none (wait for the prompt's end) if unknown."""
        class_types = {node.get("class_type") for node in workflow.values() if isinstance(node, dict)}
        try:
            output_classes = self.client.output_classes(name for name in class_types if isinstance(name, str))
        except WorkerError as exc:
            log.debug("node classes unknown (%s); the run ends at ComfyUI's end event", exc)
            return frozenset()
        return frozenset(
            node_id
            for node_id, node in workflow.items()
            if isinstance(node, dict) and node.get("class_type") in output_classes
        )

    def _lost(self, generation: int) -> str | None:
        """Why the ComfyUI this run queued on is gone, or None while it is the same live server."""
        if self.server.generation != generation:
            return "restarted"
        if self.server.state is not State.READY:
            return f"crashed ({self.server.state.value}); last log lines:\n{self.server.log_tail()}"
        return None

    def _fetch(self, refs: list[FileRef]) -> list[OutputFile]:
        """From our own disk when ComfyUI is our child, else over /view one after another on the
        keep-alive connection: ComfyUI serves /view from one event loop, so parallel fetches mostly
        add thread contention (measured on 2 CPU cores: 4 small PNGs took 18 ms in parallel against
        13 ms in turn; 4 PNGs of 3 MB, 58 ms against 62 ms)."""
        return [
            OutputFile(ref=ref, data=self._read(ref), content_type=ref.content_type, filename=ref.filename)
            for ref in refs
        ]

    def _read(self, ref: FileRef) -> bytes:
        folders = self.server.folders if self.server.managed else None
        path = local_path(folders, ref.folder_type, ref.subfolder, ref.filename) if folders else None
        if path is not None:
            return path.read_bytes()
        return self.client.view(ref.filename, ref.subfolder, ref.folder_type)


def _timings(entry: dict[str, Any], queued_at: float, started: float) -> Timings:
    """queue and execution times from ComfyUI's own timestamps (ms), total from our clock.

    A run that ended at its last output (before ComfyUI's end event) ends by our clock: `finished_at`.
    """
    stamps: dict[str, float] = {}
    for name, data in (entry.get("status") or {}).get("messages") or []:
        if isinstance(data, dict) and "timestamp" in data:
            stamps[name] = float(data["timestamp"]) / 1000.0
    start = stamps.get("execution_start")
    end = stamps.get("execution_success") or stamps.get("execution_error") or entry.get("finished_at")
    return Timings(
        queue_s=max(start - queued_at, 0.0) if start else 0.0,
        execution_s=max(end - start, 0.0) if start and end else 0.0,
        total_s=time.monotonic() - started,
    )


__all__ = ["RunResult", "Runner", "Timings", "WorkerError"]
