"""One inbox item, start to finish: what `worker-comfyui job` does in each Cloud Run task.

    start ComfyUI ──────────────── boots while the next three steps run ──┐
    result.json there for this generation? ── skip (send a pending webhook)│
    read REQUEST_URI at its generation, parse, fetch gs:// and https:// inputs
    wait for ComfyUI ◄─────────────────────────────────────────────────────┘
    run (status.json follows), upload each output whole, result.json last, then the webhook

A caller's mistake (not JSON, UI format, unknown node, missing model, bad input, a node that raised,
the request's timeout) is a *finished* item: an error result.json and exit 0, so Cloud Run does not
retry it. An infrastructure failure (ComfyUI crashed or never came up, storage failed) exits non-zero
so the task is retried; the last attempt (JOB_MAX_RETRIES) records the error in result.json first,
so no item is left without an answer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from job.boot import comfyui_runner
from job.comfyui.tracker import Progress
from job.errors import ConfigurationError, StorageError, WorkerError
from job.fetch import reference_fetcher
from job.inbox import Inbox, ItemSource
from job.inputs import gather_inputs
from job.logs import request_context
from job.outbox import Outbox, StatusWriter, result_source, utc_now
from job.request import WorkflowRequest, parse_json, parse_request
from job.response import apply_output_format, success_body
from job.runner import Runner
from job.settings import Settings
from job.storage import Storages
from job.webhook import deliver, message_id

log = logging.getLogger(__name__)


class Disposition(StrEnum):
    SUCCEEDED = "succeeded"  # outputs and a success result.json
    FAILED = "failed"  # the caller's mistake: an error result.json; finished
    SKIPPED = "skipped"  # result.json for this generation was there already
    SUPERSEDED = "superseded"  # a newer generation of the object owns the outbox folder
    RETRY = "retry"  # infrastructure failure: exit non-zero so Cloud Run retries
    GAVE_UP = "gave_up"  # infrastructure failure on the last attempt: error result.json, exit non-zero


@dataclass(frozen=True)
class ItemOutcome:
    disposition: Disposition
    result: dict[str, Any] | None = None
    error: WorkerError | None = None

    @property
    def exit_code(self) -> int:
        """0 when the item is finished (whatever its result), 1 when the task should run again."""
        return 1 if self.disposition in (Disposition.RETRY, Disposition.GAVE_UP) else 0


class _Superseded(Exception):
    """A newer generation of the inbox object appeared while this one ran."""


def run_item(settings: Settings, *, storages: Storages | None = None, runner: Runner | None = None) -> ItemOutcome:
    """Run the item REQUEST_URI names and write its outbox; ConfigurationError when none is named.

    With `runner` (a warm ComfyUI that a draining task keeps for further items) the item runs there;
    without, it boots ComfyUI for itself.
    """
    if not settings.request_uri:
        raise ConfigurationError(
            "REQUEST_URI is not set: the trigger sets it to gs://INBOX/name.json#generation; "
            "for a local run give a path (`worker-comfyui job wf.json`)"
        )
    source = ItemSource.parse(settings.request_uri)
    storages = storages or Storages(settings.google_cloud_project)
    outbox = Outbox(storages, settings.outbox_uri or source.default_outbox_uri(settings.outbox_bucket), source)
    with request_context(source.uri):
        return WorkItem(settings, source, outbox, Inbox(storages)).run(runner)


class WorkItem:
    """The steps of one item, and the bookkeeping (timings, status.json) that goes with them."""

    def __init__(self, settings: Settings, source: ItemSource, outbox: Outbox, inbox: Inbox) -> None:
        self.settings = settings
        self.source = source
        self.outbox = outbox
        self.inbox = inbox
        self.request: WorkflowRequest | None = None
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()
        self.execution = {
            "name": settings.cloud_run_execution,
            "task_index": settings.cloud_run_task_index,
            "task_count": settings.cloud_run_task_count,
            "attempt": settings.cloud_run_task_attempt,
        }
        base = {"source": source.uri, "execution": self.execution, "started_at": utc_now()}
        self.status = StatusWriter(outbox, base, settings.status_interval_s)

    def run(self, runner: Runner | None = None) -> ItemOutcome:
        """Run on `runner` (a warm ComfyUI serving many items), or on a ComfyUI booted for this item alone."""
        log.info(
            "item %s (attempt %d), outbox %s",
            self.source.uri,
            self.settings.cloud_run_task_attempt,
            self.outbox.uri,
            extra={"fields": {"execution": self.execution}},
        )
        try:
            if runner is not None:
                return self._run(runner)
            with comfyui_runner(self.settings) as booted:  # boots while _run reads and fetches
                return self._run(booted)
        except WorkerError as exc:  # storage failing around the run, or ComfyUI's own start or stop
            return self._failed(exc)
        except Exception as exc:  # a bug, or a library error nobody translated: retry, and say so
            log.exception("unexpected error")
            return self._infrastructure_failure(WorkerError(f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            self.status.close()

    def _run(self, runner: Runner) -> ItemOutcome:
        previous = self.outbox.read_result()
        owner = result_source(previous)
        if previous is not None and owner is not None and self.source.same_item(owner):
            return self._already_done(previous)
        if owner is not None and self.source.superseded_by(owner):
            log.info("skipping %s: the outbox holds the result of the newer %s", self.source.uri, owner.uri)
            return ItemOutcome(Disposition.SUPERSEDED, previous)
        self.status.start("preparing")
        try:
            body = self._execute(runner)
        except WorkerError as exc:
            return self._failed(exc)
        except _Superseded as exc:
            log.info("not writing outputs: %s", exc)
            return ItemOutcome(Disposition.SUPERSEDED)
        return self._finish(body, Disposition.SUCCEEDED)

    def _execute(self, runner: Runner) -> dict[str, Any]:
        """Read, parse, fetch (ComfyUI boots meanwhile), run, upload: the success body."""
        mark = time.monotonic()
        self.request = request = parse_request(parse_json(self.inbox.read(self.source)))
        inputs = gather_inputs(request, reference_fetcher(self.settings, self.inbox.storages))
        self.timings["prepare_s"] = time.monotonic() - mark
        booting = not runner.server.ready
        if booting:
            self.status.update(state="booting")
        runner.server.wait_ready()
        waited = time.monotonic() - self.started
        # ComfyUI's own boot (spawn to first answer) when this item waited for it; else the wait
        self.timings["boot_s"] = runner.server.boot_s if booting and runner.server.boot_s else waited
        self.status.update(state="queued")
        result = runner.run(request.workflow, inputs=inputs, timeout_s=request.timeout_s, on_progress=self._progress)
        files = apply_output_format(result.files, request.output)
        live = self.inbox.live_generation(self.source) if self.source.generation is not None else None
        if live is not None and self.source.generation is not None and live > self.source.generation:
            raise _Superseded(f"{self.source.object_uri} is at generation {live} now, newer than ours")
        self.status.update(state="uploading", progress=None)
        mark = time.monotonic()
        uris = self.outbox.write_outputs(files)
        self.timings["upload_s"] = time.monotonic() - mark
        return success_body(result, files, uris=uris)

    def _progress(self, progress: Progress) -> None:
        state = "queued" if progress.state == "queued" else "running"
        self.status.update(state=state, progress=progress.as_dict())

    # --- endings ---------------------------------------------------------------------------------

    def _failed(self, exc: WorkerError) -> ItemOutcome:
        if exc.retryable:
            return self._infrastructure_failure(exc)
        log.info("item failed (%s): %s", exc.error_type, exc.message)
        return self._finish(exc.to_body(), Disposition.FAILED, exc)

    def _infrastructure_failure(self, exc: WorkerError) -> ItemOutcome:
        """Exit non-zero for a retry; on the last attempt write the error result first."""
        attempt, retries = self.settings.cloud_run_task_attempt, self.settings.job_max_retries
        if attempt < retries:
            log.error("attempt %d of %d failed, to be retried: %s", attempt, retries + 1, exc.message)
            if not isinstance(exc, StorageError):  # storage just failed us: do not wait on it again
                self.status.close(state="retrying", error=exc.to_dict())
            return ItemOutcome(Disposition.RETRY, None, exc)
        log.error("last attempt (%d) failed: %s", attempt, exc.message)
        try:
            return self._finish(exc.to_body(), Disposition.GAVE_UP, exc)
        except StorageError as again:
            log.error("could not record the failure in result.json: %s", again.message)
            return ItemOutcome(Disposition.GAVE_UP, None, exc)

    def _finish(self, body: dict[str, Any], disposition: Disposition, error: WorkerError | None = None) -> ItemOutcome:
        """status.json's final state, then result.json, then the webhook (recorded back into result.json)."""
        doc = self._document(body)
        self.status.close(state=disposition.value, error=error.to_dict() if error else None)
        if not self.outbox.write_result(doc):
            return ItemOutcome(Disposition.SUPERSEDED, None, error)
        log.info(
            "%s: result.json written at %s",
            disposition.value,
            self.outbox.uri_of("result.json"),
            extra={"fields": {"timings": doc.get("timings"), "status": doc["status"]}},
        )
        if "webhook" in doc:
            try:
                doc = self._notify(doc)
            except StorageError as exc:  # the result stands; a retry finds the webhook pending and sends it
                return ItemOutcome(Disposition.RETRY, doc, exc)
        return ItemOutcome(disposition, doc, error)

    def _already_done(self, previous: dict[str, Any]) -> ItemOutcome:
        log.info(
            "result.json for %s exists already (status %s): nothing to do", self.source.uri, previous.get("status")
        )
        hook = previous.get("webhook")
        if isinstance(hook, dict) and hook.get("status") == "pending":
            try:
                previous = self._notify(previous)
            except StorageError as exc:
                return ItemOutcome(Disposition.RETRY, previous, exc)
        return ItemOutcome(Disposition.SKIPPED, previous)

    def _notify(self, doc: dict[str, Any]) -> dict[str, Any]:
        payload = {key: value for key, value in doc.items() if key != "webhook"}
        delivery = deliver(
            str(doc["webhook"]["url"]),
            payload,
            secret=self.settings.webhook_secret,
            msg_id=message_id(self.source.uri),
            attempts=self.settings.webhook_attempts,
            timeout_s=self.settings.webhook_timeout_s,
        )
        doc = {**doc, "webhook": delivery.as_dict()}
        self.outbox.write_result(doc)
        return doc

    def _document(self, body: dict[str, Any]) -> dict[str, Any]:
        """result.json: the response body plus where it came from, who ran it and when."""
        doc: dict[str, Any] = {"status": body["status"], "source": self.source.uri}
        if self.request is not None and self.request.id:
            doc["id"] = self.request.id
        doc.update((key, value) for key, value in body.items() if key != "status")
        timings = {**body.get("timings", {}), **self.timings, "job_s": time.monotonic() - self.started}
        doc["timings"] = {key: round(value, 3) for key, value in timings.items()}
        doc["execution"] = self.execution
        if self.request is not None and self.request.webhook:
            doc["webhook"] = {"url": self.request.webhook, "status": "pending", "attempts": 0}
        doc["finished_at"] = utc_now()
        return doc
