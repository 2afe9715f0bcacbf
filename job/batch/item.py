"""One batch item, run exactly as an inbox drop runs (job.work_item), on the task's warm ComfyUI.

The item's request document is built from the spec (the workflow with the item's overrides, plus the
spec's output, timeout and inputs) and handed to WorkItem through an Inbox that serves it, so the
steps, the outputs, result.json and the retry rules are the single drop's. result.json gains a
`batch` section: the batch id, the item's id and index, the overrides it ran with and the seeds
drawn for "random".

Two things a single drop does are left out, for speed (bench/bench_batch.py). No status.json per
item: four or five writes each, 40 ms an item on the emulator; the task's marker and `batch status`
show a batch's progress, and the status hook here only says when the item has left ComfyUI. No
read of result.json before the run: the task has just listed the prefix and seen none, and a
result written since is still caught (result.json is only ever created with a precondition).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from job.batch.folder import BatchFolder
from job.batch.plan import Item
from job.batch.spec import Batch
from job.inbox import Inbox, ItemSource
from job.outbox import Outbox, StatusWriter
from job.settings import Settings
from job.storage import Storages
from job.work_item import WorkItem


class BatchItem(WorkItem):
    """A WorkItem whose request comes from the batch spec and whose result names its place in the batch."""

    def __init__(
        self,
        settings: Settings,
        batch: Batch,
        item: Item,
        folder: BatchFolder,
        storages: Storages,
        *,
        left: threading.Event | None = None,
    ) -> None:
        outbox = _ListedOutbox(storages, folder.uri_of(f"{item.id}/"), batch.source)
        super().__init__(settings, batch.source, outbox, _SpecInbox(storages, request_document(batch, item)))
        self.status = _LeftComfyUI(outbox, left or threading.Event())
        self.batch = batch
        self.item = item

    def _document(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = super()._document(body)
        doc["batch"] = {
            "id": self.batch.id,
            "item": self.item.id,
            "index": self.item.index,
            "overrides": self.item.overrides,
            "seeds": self.item.seeds,
        }
        return doc


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


class _ListedOutbox(Outbox):
    """An outbox the task listed just now and found without result.json: the first read is free."""

    def __init__(self, storages: Storages, uri: str, source: ItemSource) -> None:
        super().__init__(storages, uri, source)
        self._listed = True

    def read_result(self) -> dict[str, Any] | None:
        if self._listed:  # generation 0 stands: the write creates result.json only if still absent
            self._listed = False
            return None
        return super().read_result()


class _LeftComfyUI(StatusWriter):
    """In place of status.json (the task's marker tracks a batch): says when the item has left ComfyUI.

    WorkItem reports "uploading" once ComfyUI is done with the item, and closes its status when the
    item ends; either sets `left`, which lets the task start the next item (pipeline.py).
    """

    def __init__(self, outbox: Outbox, left: threading.Event) -> None:
        super().__init__(outbox, {}, 0.0)
        self.left = left

    def start(self, state: str) -> StatusWriter:
        return self

    def update(self, **fields: Any) -> None:
        if fields.get("state") == "uploading":
            self.left.set()

    def close(self, **final: Any) -> None:
        self.left.set()


class _SpecInbox(Inbox):
    """Serves the item's request built from the spec; a spec is never 'overwritten' under an item."""

    def __init__(self, storages: Storages, document: bytes) -> None:
        super().__init__(storages)
        self._document = document

    def read(self, source: ItemSource) -> bytes:
        return self._document

    def live_generation(self, source: ItemSource) -> int | None:
        return None
