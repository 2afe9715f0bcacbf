"""One batch item, run exactly as an inbox drop runs (job.items.work_item), on the task's warm ComfyUI.

The item's request document is built from the spec (the workflow with the item's overrides, plus the
spec's output, timeout and inputs) and handed to WorkItem as its document, so the steps, the
outputs, result.json and the retry rules are the single drop's. result.json gains a `batch`
section: the batch id, the item's id and index, the overrides it ran with and the seeds drawn for
"random".

Two things a single drop does are left out, for speed (bench/bench_batch.py). No status.json per
item: four or five writes each; the task's marker and `batch status` show a batch's progress, and
the item's status sink here only says when the item has left ComfyUI. No read of result.json
before the run: the task has just listed the prefix and seen none, and a result written since is
still caught (result.json is only ever created with a precondition).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from job.batch.folder import BatchFolder
from job.batch.plan import Item
from job.batch.spec import Batch
from job.engine.fetch import reference_fetcher
from job.items.outbox import Outbox
from job.items.work_item import TaskPlace, WorkItem
from job.settings import Settings
from job.storage import Storages


def batch_item(
    settings: Settings,
    batch: Batch,
    item: Item,
    folder: BatchFolder,
    storages: Storages,
    place: TaskPlace,
    *,
    left: threading.Event | None = None,
) -> WorkItem:
    """A WorkItem whose request comes from the batch spec and whose result names its place in the batch.

    `left` is set once the item has left ComfyUI, so the task can start the next one (pipeline.py).
    """
    outbox = Outbox(storages, folder.uri_of(f"{item.id}/"), batch.source, result_known_absent=True)
    return WorkItem(
        settings,
        batch.source,
        outbox,
        SpecDocument(request_document(batch, item)),
        LeftComfyUI(left or threading.Event()),
        fetch=reference_fetcher(settings, storages),
        place=place,
        result_fields={
            "batch": {
                "id": batch.id,
                "item": item.id,
                "index": item.index,
                "overrides": item.overrides,
                "seeds": item.seeds,
            }
        },
    )


def request_document(batch: Batch, item: Item) -> bytes:
    """The contract's request document for one item: what a user would have dropped for it alone."""
    spec = batch.spec
    doc: dict[str, Any] = {
        "workflow": item.workflow(batch.workflow),
        "output": spec.output.model_dump(by_alias=True),
        "id": item.id,
    }
    if spec.timeout_s is not None:
        doc["timeout_s"] = spec.timeout_s
    if spec.inputs:
        doc["inputs"] = spec.inputs
    if spec.images:
        doc["images"] = [image.model_dump() for image in spec.images]
    return json.dumps(doc).encode()


@dataclass(frozen=True)
class SpecDocument:
    """The item's request, built from the spec; a spec is never 'overwritten' under an item."""

    data: bytes

    def read(self) -> bytes:
        return self.data

    def live_generation(self) -> int | None:
        return None


@dataclass(frozen=True)
class LeftComfyUI:
    """The status sink of a batch item (the task's marker tracks the batch): says when it has left ComfyUI.

    WorkItem reports "uploading" once ComfyUI is done with the item, and closes its status when the
    item ends; either sets `left`.
    """

    left: threading.Event

    def start(self, state: str) -> LeftComfyUI:
        return self

    def update(self, **fields: Any) -> None:
        if fields.get("state") == "uploading":
            self.left.set()

    def close(self, **final: Any) -> None:
        self.left.set()
