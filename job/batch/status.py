"""How far a batch has got, read from its prefix alone (`worker-comfyui batch status PREFIX`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from job.batch.folder import MANIFEST, SUMMARY, BatchFolder
from job.errors import InputNotFound


@dataclass
class BatchStatus:
    batch: str
    prefix: str
    total: int
    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> its error
    pending: list[str] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    @property
    def done(self) -> int:
        return len(self.succeeded) + len(self.failed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "prefix": self.prefix,
            "items": self.total,
            "done": self.done,
            "succeeded": len(self.succeeded),
            "failed": len(self.failed),
            "pending": len(self.pending),
            "failed_items": self.failed,
            "summary": self.summary is not None,
        }


def read_status(folder: BatchFolder) -> BatchStatus:
    """Counts from the manifest (every item id) and the results there; InputNotFound when no batch is there."""
    manifest = folder.read_json(MANIFEST)[0]
    if manifest is None or not isinstance(manifest.get("items"), list):
        raise InputNotFound(
            f"{folder.uri_of(MANIFEST)} does not exist: {folder.prefix} is not a batch's prefix, or no task of "
            "the batch has started yet"
        )
    ids = [str(item_id) for item_id in manifest["items"]]
    status = BatchStatus(batch=str(manifest.get("batch")), prefix=folder.prefix, total=len(ids))
    finished = folder.finished_items()
    results = folder.read_results(item_id for item_id in ids if item_id in finished)
    for item_id in ids:
        result = results.get(item_id)
        if result is None:
            status.pending.append(item_id)
        elif result.get("status") == "success":
            status.succeeded.append(item_id)
        else:
            status.failed[item_id] = result.get("error") or {}
    status.tasks = folder.task_markers()
    status.summary = folder.read_json(SUMMARY)[0]
    return status
