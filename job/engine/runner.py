"""The engine: one workflow in, its output files out, on a ComfyUI we supervise or attach to.

The job, the /predict service and the CLI all run workflows through `Runner.run`. A runner keeps
one websocket (job.comfyui.websocket) and queues each run under a prompt_id of its own choosing, so
the events and outputs of one run never mix with another's. Nor do its files:

    check node types, models, files (engine.preflight)      before anything is written; URL values fetched
    upload the inputs to input/_runs/<run>/                  the workflow's references rewritten to match
    queue, follow, read the outputs                          each output node made to run afresh
    delete the outputs read and the run's input folder       a managed ComfyUI, unless KEEP_OUTPUTS

An attached ComfyUI (COMFYUI_URL) gets the same checks and subfolders, but its API deletes nothing.
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
from job.comfyui.compat import is_output_node, new_prompt_id
from job.comfyui.config import ComfyConfig
from job.comfyui.folders import local_path, remove_file, remove_tree
from job.comfyui.outputs import FileRef, OutputFile, delivered, file_refs
from job.comfyui.overrun import Overruns
from job.comfyui.process import ComfyServer, State
from job.comfyui.tracker import ProgressCallback, PromptTracker
from job.comfyui.websocket import EventHub
from job.engine.file_policy import RUNS_FOLDER, fresh_outputs
from job.engine.inputs import NO_FETCH, Fetch, fetch_references
from job.engine.media import check_input_name
from job.engine.preflight import preflight
from job.errors import InvalidInput, WorkerError
from job.logs import prompt_id as prompt_id_var

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


@dataclass(frozen=True)
class _Run:
    """One run once its files are checked and uploaded: what following it needs."""

    workflow: dict[str, Any]
    output_nodes: frozenset[str]
    generation: int
    started: float
    deadline: float
    timeout_s: float
    on_progress: ProgressCallback | None
    include_temp: bool
    cancel: threading.Event | None
    extra_data: Mapping[str, Any] | None = None  # POST /prompt's extra_data: the caller's, a secret


class Runner:
    """Runs workflows on one ComfyUI. Safe to share between threads.

    Its websocket retries, /history polling, default deadline and file rules are `config`'s: the
    server's (`server.config`) unless another is passed in.
    """

    def __init__(self, server: ComfyServer, config: ComfyConfig | None = None) -> None:
        self.server = server
        self.config = config = config or server.config
        self.client = ComfyClient(server.base_url)
        self._classes_generation = 0  # the server boot whose node classes the client remembers
        self.events = EventHub(
            self.client.ws_url,
            attempts=config.reconnect_attempts,
            delay_s=config.reconnect_delay_s,
            trace=config.websocket_trace,
        )
        # Prompts ComfyUI runs on past their run's end (a node it cannot interrupt): new runs wait
        # for them, and their files are deleted once they end.
        self.overruns = Overruns(self.client, finished=lambda prompt_id: self._discard_outputs(prompt_id, None))

    def close(self) -> None:
        self.overruns.close()
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
        fetch: Fetch | None = None,
        extra_data: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Check the workflow's files, upload inputs, queue, follow to the end, fetch every output file.

        Raises WorkerError. Setting `cancel` (from another thread) dequeues or interrupts the prompt
        and ends the run. `fetch` (the caller's, bounded by its settings) fetches the file inputs
        whose value is a URL; without it such a value is refused. `extra_data` goes to ComfyUI with
        the prompt (POST /prompt's own field), never into a log line.
        """
        started = time.monotonic()
        timeout_s = timeout_s or self.config.run_timeout_s
        deadline = started + timeout_s
        inputs = {check_input_name(name): data for name, data in (inputs or {}).items()}  # all, before any upload
        self.server.wait_ready(timeout_s)
        generation = self.server.generation
        classes = self._node_classes(workflow, generation)
        folder = f"{RUNS_FOLDER}/{uuid.uuid4().hex}"
        # Every unknown node type, missing model and refused file at once, before anything is written.
        prepared = preflight(
            workflow,
            inputs=inputs,
            folder=folder,
            classes=classes,
            allow_outside=self.config.allow_output_inputs,
            fresh_object_info=lambda: self.client.object_info(refresh=True),
        )
        workflow = prepared.workflow
        if prepared.urls:  # file inputs given as URLs: fetched as the request's `inputs` are
            if fetch is None:
                raise InvalidInput(f"{', '.join(prepared.where.values())}: a URL value is not fetched here; {NO_FETCH}")
            fetched = fetch_references(prepared.urls, fetch, deadline=deadline, cancel=cancel, where=prepared.where)
            inputs.update(fetched)
        output_nodes = _output_nodes(workflow, classes)
        workflow = fresh_outputs(workflow, output_nodes, new_prompt_id())
        try:
            for name, data in inputs.items():
                stored = self.client.upload_image(name, data, subfolder=folder)
                if stored != f"{folder}/{name}":
                    raise WorkerError(f"ComfyUI stored input {name!r} as {stored!r}, not where the workflow names it")
            run = _Run(
                workflow,
                output_nodes,
                generation,
                started,
                deadline,
                timeout_s,
                on_progress,
                include_temp,
                cancel,
                extra_data,
            )
            return self._queue_and_follow(run)
        finally:
            if inputs and self.server.managed and self.server.input_folder is not None:
                remove_tree(self.server.input_folder, folder)

    def _queue_and_follow(self, run: _Run) -> RunResult:
        workflow = run.workflow
        self.overruns.wait_free(run.deadline, run.cancel)  # ComfyUI runs one prompt: an earlier one first
        # Subscribed before queueing, so no event can come first; /history covers a socket that is down.
        with self.events.subscribe(new_prompt_id()) as events:
            queued_at = time.time()
            prompt_id = self.client.queue_prompt(workflow, events.client_id, events.prompt_id, run.extra_data)
            if prompt_id != events.prompt_id:
                self.events.rekey(events, prompt_id)
            token = prompt_id_var.set(prompt_id)
            entry: dict[str, Any] | None = None
            try:
                log.info("queued prompt %s (%d nodes)", prompt_id, len(workflow))
                tracker = PromptTracker(
                    client=self.client,
                    events=events,
                    prompt_id=prompt_id,
                    workflow=workflow,
                    deadline=run.deadline,
                    timeout_s=run.timeout_s,
                    poll_s=self.config.history_poll_s,
                    lost=lambda: self._lost(run.generation),
                    on_progress=run.on_progress,
                    cancel=run.cancel,
                    output_nodes=run.output_nodes,
                    on_overrun=lambda held, why: self.overruns.hold(held, why, lambda: self._lost(run.generation)),
                )
                entry = tracker.wait()
                # What it saved; only previews when it saved nothing; WorkflowInvalid for nothing at all.
                refs = delivered(entry.get("outputs") or {}, include_temp=run.include_temp)
                # ComfyUI lists outputs in execution order, which varies between runs; the
                # workflow's own node order does not.
                order = {node_id: index for index, node_id in enumerate(workflow)}
                files = self._fetch(sorted(refs, key=lambda ref: order.get(ref.node_id, len(order))))
                timings = _timings(entry, queued_at, run.started)
                log.info(
                    "prompt %s done: %d file(s)",
                    prompt_id,
                    len(files),
                    extra={"fields": {"timings": timings.as_dict()}},
                )
                return RunResult(prompt_id=prompt_id, outputs=entry.get("outputs") or {}, files=files, timings=timings)
            finally:
                if not self.overruns.holds(prompt_id):  # else deleted when ComfyUI is done with it
                    self._discard_outputs(prompt_id, entry)
                prompt_id_var.reset(token)

    def _node_classes(self, workflow: dict[str, Any], generation: int) -> dict[str, dict[str, Any]]:
        """/object_info of the workflow's classes, remembered per boot: a restart may bring other nodes."""
        if generation != self._classes_generation:
            self.client.forget_classes()
            self._classes_generation = generation
        class_types = {node.get("class_type") for node in workflow.values() if isinstance(node, dict)}
        return self.client.class_info(name for name in class_types if isinstance(name, str))

    def _discard_outputs(self, prompt_id: str, entry: dict[str, Any] | None) -> None:
        """Delete the files a managed ComfyUI wrote for this run: read already, or never to be (it failed).

        A failed run's files are the ones its /history entry lists; a crashed ComfyUI's are left.
        """
        folders = self.server.folders
        if not self.server.managed or self.config.keep_outputs or folders is None:
            return
        if entry is None:
            try:
                entry = self.client.history(prompt_id)
            except WorkerError as exc:
                log.warning("the outputs of prompt %s stay on disk: its history is out of reach (%s)", prompt_id, exc)
                return
        for ref in file_refs((entry or {}).get("outputs") or {}, include_temp=True):
            path = local_path(folders, ref.folder_type, ref.subfolder, ref.filename)
            if path is not None:
                remove_file(folders[ref.folder_type], path)

    def _lost(self, generation: int) -> str | None:
        """Why the ComfyUI this run queued on is gone, or None while it is the same live server."""
        if self.server.generation != generation:
            return "restarted"
        if self.server.state is not State.READY:
            # ComfyUI's last lines stay in the log (the supervisor logs them as it exits): they may
            # hold other requests' prompts and file names, so no caller gets them.
            return f"crashed ({self.server.state.value}; its last log lines are in the worker's log)"
        return None

    def _fetch(self, refs: list[FileRef]) -> list[OutputFile]:
        """From our own disk when ComfyUI is our child, else over /view one after another on the
        keep-alive connection: ComfyUI serves /view from one event loop, so parallel fetches mostly
        add thread contention (the figures are in docs/development.md, "Measured design choices")."""
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


def _output_nodes(workflow: dict[str, Any], classes: dict[str, dict[str, Any]]) -> frozenset[str]:
    """The workflow's output nodes, by their class; none (wait for the prompt's end) if unknown."""
    return frozenset(
        node_id
        for node_id, node in workflow.items()
        if isinstance(node, dict) and (info := classes.get(str(node.get("class_type")))) and is_output_node(info)
    )


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
