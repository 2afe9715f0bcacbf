"""One task of a batch: its share of the items on a single ComfyUI boot, resumable, failure-tolerant.

    load the spec, plan every item ──── a bad spec stops here: nothing booted, nothing written
    batch.json (first task only)
    list <prefix>*/result.json ──────── items with a result (an earlier attempt's, a rerun's) are skipped
    nothing left of the share? ──────── no boot: a rerun of a finished batch costs one listing
    _tasks/<index>.json "running" (rewritten with the progress every few seconds)
    boot ComfyUI once; the pending items in turn, each as an inbox drop runs (item.py, pipeline.py)
    _tasks/<index>.json "done", then summary.json if every item has a result (job.batch.summary)

An item that fails for the caller's reasons has its error result.json and the task goes on. An
infrastructure failure leaves the item without a result and the task exits 1, so Cloud Run retries
it and the retry runs only what is missing; on the last attempt (JOB_MAX_RETRIES) such items get
an error result.json too, as single drops do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from job.batch.folder import MANIFEST, TASKS, BatchFolder
from job.batch.item import batch_item
from job.batch.pipeline import run_in_turn
from job.batch.plan import Item, plan_items, task_share
from job.batch.spec import Batch, load_batch
from job.batch.summary import finish_batch
from job.engine.boot import comfyui_runner
from job.engine.runner import Runner
from job.errors import ConfigurationError, WorkerError
from job.items.outbox import utc_now
from job.items.work_item import Disposition, ItemOutcome, TaskPlace
from job.logs import request_context
from job.settings import Settings
from job.storage import Storages

log = logging.getLogger(__name__)

_MAX_CONSECUTIVE_RETRIES = 3  # infrastructure failures in a row: ComfyUI is down, let Cloud Run retry the task
_MARK_EVERY_S = 5.0  # how often a running task rewrites its marker with its progress

ItemCallback = Callable[[Item, ItemOutcome], None]


@dataclass(frozen=True)
class PreparedBatch:
    """A batch loaded and planned, before anything is booted or written."""

    batch: Batch
    items: list[Item]
    folder: BatchFolder


def prepare_batch(uri: str, storages: Storages, settings: Settings, *, prefix: str | None = None) -> PreparedBatch:
    """Load and check the spec and plan every item; raises RequestError for what the author must fix."""
    batch = load_batch(uri, storages, settings, prefix=prefix)
    return PreparedBatch(batch, plan_items(batch), BatchFolder(storages, batch.prefix))


def ensure_manifest(prepared: PreparedBatch) -> None:
    """batch.json: the item ids `batch status` counts against; the first task writes it."""
    batch, folder = prepared.batch, prepared.folder
    doc = {
        "batch": batch.id,
        "spec": batch.source.uri,
        "prefix": batch.prefix,
        "count": len(prepared.items),
        "items": [item.id for item in prepared.items],
        "created_at": utc_now(),
    }
    if folder.replace_json(MANIFEST, doc, 0):
        return
    current = folder.read_json(MANIFEST)[0] or {}
    if current.get("items") != doc["items"]:
        log.warning(
            "%s lists other items than this spec plans (the spec changed?): rewriting it; items whose "
            "result.json exists are still skipped",
            folder.uri_of(MANIFEST),
        )
        folder.write_json(MANIFEST, {**doc, "created_at": current.get("created_at", doc["created_at"])})


@dataclass
class TaskReport:
    """What one task did; written as its marker and folded into summary.json."""

    task_index: int
    task_count: int
    attempt: int
    execution: str | None
    share: int  # items in this task's share
    skipped: int  # of them, done before this task started
    started_at: str
    state: str = "running"  # then "done"
    outcomes: Counter[str] = field(default_factory=Counter)
    boots: int = 0
    finished_at: str | None = None
    wall_s: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when every item of the share has its result; 1 when some wait for a retry of the task."""
        unfinished = self.outcomes[Disposition.RETRY.value] + self.outcomes[Disposition.GAVE_UP.value]
        return 1 if unfinished or self.share - self.skipped > sum(self.outcomes.values()) else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_index": self.task_index,
            "task_count": self.task_count,
            "attempt": self.attempt,
            "execution": self.execution,
            "share": self.share,
            "skipped": self.skipped,
            "state": self.state,
            "outcomes": dict(self.outcomes),
            "boots": self.boots,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wall_s": round(self.wall_s, 3),
        }


class BatchTask:
    """Task `place.index` of `place.count` of a prepared batch."""

    def __init__(
        self,
        prepared: PreparedBatch,
        settings: Settings,
        storages: Storages,
        place: TaskPlace,
        *,
        on_item: ItemCallback | None = None,
    ) -> None:
        self.prepared = prepared
        self.settings = settings
        self.storages = storages
        self.place = place
        self.on_item = on_item
        self.stop = threading.Event()  # set from another thread: finish the item under way, start no other
        indexes = task_share(len(prepared.items), place.index, place.count)
        self.share = [prepared.items[index] for index in indexes]

    def pending(self, finished: set[str]) -> list[Item]:
        return [item for item in self.share if item.id not in finished]

    def run(self, runner: Runner | None, pending: Sequence[Item]) -> TaskReport:
        """Run `pending` (this share minus what is done) on `runner`, then mark the task done."""
        settings, batch, place = self.settings, self.prepared.batch, self.place
        report = TaskReport(
            task_index=place.index,
            task_count=place.count,
            attempt=place.attempt,
            execution=place.execution,
            share=len(self.share),
            skipped=len(self.share) - len(pending),
            started_at=utc_now(),
        )
        log.info(
            "batch %s task %d/%d: %d of its %d items to run (%d done before)",
            batch.id,
            report.task_index,
            report.task_count,
            len(pending),
            report.share,
            report.skipped,
        )
        started = marked = time.monotonic()
        if pending and runner is None:
            raise ConfigurationError("a batch task with items to run needs a ComfyUI runner")
        self._mark(report, final=False)
        in_a_row = 0

        def run_one(item: Item, left: threading.Event) -> ItemOutcome:
            assert runner is not None
            with request_context(f"{batch.id}/{item.id}"):
                work = batch_item(settings, batch, item, self.prepared.folder, self.storages, place, left=left)
                return work.run(runner)

        def heard(item: Item, outcome: ItemOutcome) -> bool:
            nonlocal in_a_row, marked
            report.outcomes[outcome.disposition.value] += 1
            if self.on_item is not None:
                self.on_item(item, outcome)
            in_a_row = in_a_row + 1 if outcome.disposition is Disposition.RETRY else 0
            if in_a_row >= _MAX_CONSECUTIVE_RETRIES:
                log.error(
                    "%d infrastructure failures in a row: stopping this task with items left, so that Cloud "
                    "Run retries it (the retry runs only the items without a result)",
                    in_a_row,
                )
                return False
            if time.monotonic() - marked >= _MARK_EVERY_S:
                report.wall_s, marked = time.monotonic() - started, time.monotonic()
                self._mark(report, final=False)
            return True

        run_in_turn(pending, run_one, heard, self.stop)
        if self.stop.is_set():
            log.info("batch %s task %d: stopped with items left", batch.id, report.task_index)
        report.boots = runner.server.generation if runner is not None and runner.server.managed else 0
        report.wall_s = time.monotonic() - started
        report.finished_at = utc_now()
        report.state = "done"
        self._mark(report, final=True)
        by = {"task_index": report.task_index, "attempt": report.attempt, "execution": report.execution}
        finish_batch(batch, self.prepared.items, self.prepared.folder, by=by)
        log.info("batch %s task %d: %s", batch.id, report.task_index, dict(report.outcomes) or "nothing to run")
        return report

    def _mark(self, report: TaskReport, *, final: bool) -> None:
        """The task's marker: its progress while it runs (best effort), its report when done."""
        try:
            self.prepared.folder.write_json(f"{TASKS}{report.task_index}.json", report.as_dict())
        except WorkerError as exc:
            if final:
                raise
            log.warning("could not write the task marker: %s", exc.message)


def run_batch_task(settings: Settings, prefix: str | None, *, storages: Storages | None = None) -> TaskReport:
    """`worker-comfyui job` with BATCH_URI: this task's share, on one ComfyUI boot (none if nothing is left).

    `prefix` (OUTBOX_URI) puts the batch somewhere other than its spec or default says."""
    if not settings.batch_uri:
        raise ConfigurationError("BATCH_URI is not set: give the batch spec, gs://bucket/name.batch.json or a path")
    storages = storages or Storages(settings.google_cloud_project)
    prepared = prepare_batch(settings.batch_uri, storages, settings, prefix=prefix)
    with request_context(prepared.batch.id):
        ensure_manifest(prepared)
        task = BatchTask(prepared, settings, storages, TaskPlace.of(settings))
        pending = task.pending(prepared.folder.finished_items())
        if not pending:
            return task.run(None, pending)
        with comfyui_runner(settings) as runner:  # boots while the first item is prepared
            return task.run(runner, pending)
