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
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from job.comfyui.outputs import OutputFile
from job.comfyui.tracker import Progress
from job.engine.boot import comfyui_runner
from job.engine.core import RunOptions, run_request
from job.engine.fetch import reference_fetcher
from job.engine.inputs import Fetch, gather_inputs
from job.engine.request import WorkflowRequest, parse_json, parse_request
from job.engine.runner import Runner, RunResult
from job.engine.webhook import Notifier
from job.errors import Cancelled, ConfigurationError, StorageError, WorkerError
from job.items.cancel import CancelWatch
from job.items.inbox import Inbox, ItemSource
from job.items.outbox import Outbox, StatusWriter, result_source, utc_now
from job.logs import request_context
from job.settings import Settings
from job.storage import Storages

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


class RequestDocument(Protocol):
    """Where an item's request document comes from."""

    def read(self) -> bytes:
        """The document's bytes."""
        ...

    def live_generation(self) -> int | None:
        """The object's generation now, to catch an overwrite during the run; None when it cannot move on."""
        ...


class StatusSink(Protocol):
    """Where an item reports its state while it runs: status.json for a drop, a batch's own tracking."""

    def start(self, state: str) -> object: ...

    def update(self, **fields: Any) -> None: ...

    def close(self, **final: Any) -> None: ...


@dataclass(frozen=True)
class InboxDocument:
    """A request document in the inbox (or a local file): that exact generation, and whether it moved on."""

    inbox: Inbox
    source: ItemSource

    def read(self) -> bytes:
        return self.inbox.read(self.source)

    def live_generation(self) -> int | None:
        return self.inbox.live_generation(self.source) if self.source.generation is not None else None


@dataclass(frozen=True)
class TaskPlace:
    """The Cloud Run task that runs an item (result.json's and status.json's `execution`).

    Read once at the edge from CLOUD_RUN_*; a local batch gives each of its task threads its own
    index. A drained item also records the attempt of the claim it runs under.
    """

    execution: str | None = None
    index: int = 0
    count: int = 1
    attempt: int = 0  # CLOUD_RUN_TASK_ATTEMPT: the retry rules count these, against JOB_MAX_RETRIES
    claim_attempt: int | None = None  # set for an item a draining task took

    @classmethod
    def of(cls, settings: Settings) -> TaskPlace:
        return cls(
            settings.cloud_run_execution,
            settings.cloud_run_task_index,
            settings.cloud_run_task_count,
            settings.cloud_run_task_attempt,
        )

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.execution, "task_index": self.index, "task_count": self.count, "attempt": self.attempt
        }  # fmt: skip
        if self.claim_attempt is not None:
            doc.update(drained=True, claim_attempt=self.claim_attempt)
        return doc


def status_json(outbox: Outbox, source: ItemSource, place: TaskPlace, settings: Settings) -> StatusWriter:
    """The status.json writer of a dropped item."""
    base = {"source": source.uri, "execution": place.as_dict(), "started_at": utc_now()}
    return StatusWriter(outbox, base, settings.status_interval_s)


def run_item(
    settings: Settings,
    request_uri: str | None,
    outbox_uri: str | None = None,
    *,
    storages: Storages | None = None,
    runner: Runner | None = None,
    place: TaskPlace | None = None,
) -> ItemOutcome:
    """Run the item `request_uri` names (REQUEST_URI) and write its outbox (`outbox_uri`, else the
    contract's folder for it); ConfigurationError when none is named.

    With `runner` (a warm ComfyUI that a draining task keeps for further items) the item runs there;
    without, it boots ComfyUI for itself. `place`: the task that runs it (default: CLOUD_RUN_*).
    """
    if not request_uri:
        raise ConfigurationError(
            "REQUEST_URI is not set: the trigger sets it to gs://INBOX/name.json#generation; "
            "for a local run give a path (`worker-comfyui job wf.json`)"
        )
    source = ItemSource.parse(request_uri)
    storages = storages or Storages(settings.google_cloud_project)
    outbox = Outbox(storages, outbox_uri or source.default_outbox_uri(settings.outbox_bucket), source)
    place = place or TaskPlace.of(settings)
    item = WorkItem(
        settings,
        source,
        outbox,
        InboxDocument(Inbox(storages), source),
        status_json(outbox, source, place, settings),
        fetch=reference_fetcher(settings, storages),
        place=place,
        cancellable=True,
    )
    with request_context(source.uri):
        return item.run(runner)


class WorkItem:
    """The steps of one item, and the bookkeeping (timings, status, result.json) that goes with them.

    Its collaborators come in whole: where the request document comes from, the outbox, where its
    status goes, how references are fetched, the task that runs it, and any further
    fields its result.json carries (a batch item's `batch`).
    """

    def __init__(
        self,
        settings: Settings,
        source: ItemSource,
        outbox: Outbox,
        document: RequestDocument,
        status: StatusSink,
        *,
        fetch: Fetch,
        place: TaskPlace,
        result_fields: Mapping[str, Any] | None = None,
        cancellable: bool = False,
    ) -> None:
        self.settings = settings
        self.source = source
        self.outbox = outbox
        self.document = document
        self.status = status
        self.fetch = fetch
        self.place = place
        self.execution = place.as_dict()
        self.result_fields = dict(result_fields or {})
        self.notifier = Notifier.configured(settings)
        self.request: WorkflowRequest | None = None
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()
        # An inbox item honours its outbox's cancel.json (job/items/cancel.py); a batch item has none.
        self.cancellable = cancellable
        self.cancel = threading.Event()

    def run(self, runner: Runner | None = None) -> ItemOutcome:
        """Run on `runner` (a warm ComfyUI serving many items), or on a ComfyUI booted for this item alone."""
        log.info(
            "item %s (attempt %d), outbox %s",
            self.source.uri,
            self.place.attempt,
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
            body = self._execute_unless_cancelled(runner)
        except WorkerError as exc:
            return self._failed(exc)
        except _Superseded as exc:
            log.info("not writing outputs: %s", exc)
            return ItemOutcome(Disposition.SUPERSEDED)
        return self._finish(body, Disposition.SUCCEEDED)

    def _execute_unless_cancelled(self, runner: Runner) -> dict[str, Any]:
        """_execute, watched for the caller's cancel.json when the item is cancellable: Cancelled when
        it was there before the start (nothing runs) or appeared before the outputs went out."""
        if not self.cancellable:
            return self._execute(runner)
        with CancelWatch(self.outbox, self.cancel, self.settings.cancel_poll_s):
            try:
                return self._execute(runner)
            except WorkerError as exc:
                if self.cancel.is_set() and not isinstance(exc, Cancelled):
                    raise self._cancelled() from None
                raise

    def _cancelled(self) -> Cancelled:
        return Cancelled(
            "the request was cancelled by its caller while it ran; its prompt was stopped, no outputs kept"
        )

    def _execute(self, runner: Runner) -> dict[str, Any]:
        """Read, parse, fetch (ComfyUI boots meanwhile), then the request core: the success body."""
        mark = time.monotonic()
        self.request = request = parse_request(parse_json(self.document.read()))
        if self.cancel.is_set():  # seen before the start (the request is parsed for its id and webhook)
            raise Cancelled("the request was cancelled by its caller before it started; nothing ran")
        fetched_by = time.monotonic() + (request.timeout_s or self.settings.run_timeout_s)  # never past the request
        inputs = gather_inputs(request, self.fetch, deadline=fetched_by, cancel=self.cancel)
        self.timings["prepare_s"] = time.monotonic() - mark
        booting = not runner.server.ready
        if booting:
            self.status.update(state="booting")
        runner.server.wait_ready()
        waited = time.monotonic() - self.started
        # ComfyUI's own boot (spawn to first answer) when this item waited for it; else the wait
        self.timings["boot_s"] = runner.server.boot_s if booting and runner.server.boot_s else waited
        self.status.update(state="queued")
        options = RunOptions(
            on_progress=self._progress,
            before_publish=self._before_upload,
            inputs=inputs,
            fetch=self.fetch,
            cancel=self.cancel,
        )
        return run_request(request, runner, options, self._upload).body

    def _before_upload(self, result: RunResult) -> None:
        """Outputs go out only while this generation is still the object's newest."""
        live = self.document.live_generation()
        if live is not None and self.source.generation is not None and live > self.source.generation:
            raise _Superseded(f"{self.source.object_uri} is at generation {live} now, newer than ours")
        if self.cancellable and (self.cancel.is_set() or self.outbox.cancel_requested()):  # a last, fresh look
            raise self._cancelled()
        self.status.update(state="uploading", progress=None)

    def _upload(self, files: list[OutputFile], result: RunResult) -> dict[str, str]:
        mark = time.monotonic()
        uris = self.outbox.write_outputs(files)
        self.timings["upload_s"] = time.monotonic() - mark
        return uris

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
        attempt, retries = self.place.attempt, self.settings.job_max_retries
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
        delivery = self.notifier.send(str(doc["webhook"]["url"]), payload, key=self.source.uri)
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
        doc.update(self.result_fields)
        if self.request is not None and self.request.webhook:
            doc["webhook"] = {"url": self.request.webhook, "status": "pending", "attempts": 0}
        doc["finished_at"] = utc_now()
        return doc
