"""A batch's prefix on GCS or on disk, and the few conditional writes that coordinate its tasks.

    <prefix>batch.json            the manifest: batch id, spec, item ids (written by the first task)
    <prefix><item-id>/...         each item's outbox folder, as an inbox drop's (job.items.outbox)
    <prefix>_tasks/<index>.json   a task's marker, written when it has run its share
    <prefix>summary.json          written by the task that finishes last (job.batch.summary)

Compare-and-swap is the store's conditional write on a generation (`if_generation`, 0: only if
absent), the same on GCS and on disk (job.storage), where a local run's tasks are threads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from job.errors import InputNotFound
from job.items.outbox import RESULT
from job.storage import Listed, Storages, WriteConflict, as_folder

log = logging.getLogger(__name__)

MANIFEST = "batch.json"
SUMMARY = "summary.json"
TASKS = "_tasks/"
_JSON = "application/json"
_READERS = 16


class BatchFolder:
    """Reads and writes the files under one batch prefix (gs://bucket/path/ or a local folder)."""

    def __init__(self, storages: Storages, prefix: str) -> None:
        self.storages = storages
        self.prefix = as_folder(prefix)

    def uri_of(self, relpath: str) -> str:
        return self.prefix + relpath

    # --- which items are done --------------------------------------------------------------------

    def finished_items(self) -> set[str]:
        """Ids of the items whose result.json exists: one listing of results only, however many items there are."""
        return {item.name.partition("/")[0] for item in self._listed("", f"*/{RESULT}")}

    def read_results(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """result.json of each item that has one, read in parallel."""

        def read_one(item_id: str) -> tuple[str, dict[str, Any] | None]:
            return item_id, self.read_json(f"{item_id}/{RESULT}")[0]

        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            return {item_id: doc for item_id, doc in pool.map(read_one, item_ids) if doc is not None}

    def task_markers(self) -> list[dict[str, Any]]:
        """Every task marker there, by task index."""
        names = [f"{TASKS}{item.name}" for item in self._listed(TASKS, "*.json")]
        markers = [doc for doc in (self.read_json(name)[0] for name in names) if doc is not None]
        return sorted(markers, key=lambda doc: int(doc.get("task_index", 0)))

    # --- JSON files, plain and conditional --------------------------------------------------------

    def read_json(self, relpath: str) -> tuple[dict[str, Any] | None, int]:
        """The document and its generation; (None, 0) when absent."""
        uri = self.uri_of(relpath)
        found = self.storages.read_versioned(uri)
        if found is None:
            return None, 0
        try:
            doc = json.loads(found.data)
        except ValueError:
            log.warning("%s is not JSON; treating it as absent", uri)
            return None, found.generation
        return (doc if isinstance(doc, dict) else None), found.generation

    def write_json(self, relpath: str, doc: dict[str, Any]) -> None:
        """Write unconditionally (task markers, which only their own task writes)."""
        self.storages.write(self.uri_of(relpath), _dumps(doc), _JSON)

    def replace_json(self, relpath: str, doc: dict[str, Any], generation: int) -> bool:
        """Write only if the file is still at `generation` (0: only if absent); False when it moved on."""
        try:
            self.storages.write(
                self.uri_of(relpath), _dumps(doc), _JSON, if_generation=generation, cache_control="no-store"
            )
        except WriteConflict:
            return False
        return True

    def _listed(self, relpath: str, glob: str) -> list[Listed]:
        """What is under `relpath` matching `glob`; nothing when the folder (or bucket) is not there yet."""
        try:
            return list(self.storages.list(self.uri_of(relpath), glob=glob))
        except InputNotFound:
            return []


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, default=str).encode()
