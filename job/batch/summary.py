"""summary.json: written once every item of the batch has a result, by the task that finishes last.

Every task, once its share is run, writes its marker (`_tasks/<index>.json`) and then checks
whether every item has a result.json. Writing before checking means that of two tasks finishing
together at least one sees the other's work, so some task always writes the summary. No lock
server: the write is optimistic concurrency on the object's generation, the read of the generation
coming before the listing the summary is computed from:

    read summary.json (generation g) -> list results and markers -> same content? stop
                                     -> write if_generation=g (0: only if absent)
                                        WriteConflict: another task wrote since g; go round again

A writer that computed from an older view can therefore never overwrite a newer one, and the last
task's view (every marker written) is the one that stays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from job.batch.folder import MANIFEST, SUMMARY, BatchFolder
from job.batch.plan import Item
from job.batch.spec import Batch
from job.errors import StorageError
from job.items.outbox import RESULT, utc_now

log = logging.getLogger(__name__)

_CAS_TRIES = 8
_LISTED_FAILURES = 100  # the summary names this many failed items at most; the rest are counted


def finish_batch(
    batch: Batch, items: Sequence[Item], folder: BatchFolder, *, by: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Write summary.json if every item has a result; returns the summary there, or None (items pending)."""
    for _ in range(_CAS_TRIES):
        current, generation = folder.read_json(SUMMARY)
        finished = folder.finished_items()
        pending = [item.id for item in items if item.id not in finished]
        if pending:
            log.info(
                "%d of %d items have no result yet (first: %s): the task that finishes last writes %s",
                len(pending),
                len(items),
                pending[0],
                SUMMARY,
            )
            return None
        doc = build_summary(
            batch,
            items,
            folder.read_results(item.id for item in items),
            folder.task_markers(),
            folder.read_json(MANIFEST)[0] or {},
        )
        if current is not None and current.get("fingerprint") == doc["fingerprint"]:
            return current  # another task wrote this very summary
        doc["written_at"] = utc_now()
        doc["written_by"] = dict(by)
        if folder.replace_json(SUMMARY, doc, generation):
            counts = doc["counts"]
            log.info(
                "batch %s complete: %d succeeded, %d failed; %s written",
                batch.id,
                counts["succeeded"],
                counts["failed"],
                folder.uri_of(SUMMARY),
            )
            return doc
    raise StorageError(f"{folder.uri_of(SUMMARY)} kept changing while this task tried to write it")


def build_summary(
    batch: Batch,
    items: Sequence[Item],
    results: Mapping[str, Mapping[str, Any]],
    markers: Sequence[Mapping[str, Any]],
    manifest: Mapping[str, Any],
) -> dict[str, Any]:
    """Counts, the failed items with their errors, timings, and each task's marker."""
    failed = [item for item in items if results.get(item.id, {}).get("status") != "success"]
    timings = [results[item.id].get("timings") or {} for item in items if item.id in results]
    finished = [str(doc["finished_at"]) for doc in results.values() if doc.get("finished_at")]
    started_at, finished_at = manifest.get("created_at"), max(finished, default=None)
    doc: dict[str, Any] = {
        "batch": batch.id,
        "spec": batch.source.uri,
        "prefix": batch.prefix,
        "status": "succeeded" if not failed else "completed_with_errors",
        "counts": {"items": len(items), "succeeded": len(items) - len(failed), "failed": len(failed)},
        "failed": [_failure(batch, item, results.get(item.id)) for item in failed[:_LISTED_FAILURES]],
        "timings": {
            "started_at": started_at,
            "finished_at": finished_at,
            "wall_s": _seconds_between(started_at, finished_at),
            "item_s": _stats(t.get("job_s") for t in timings),
            "execution_s": _stats(t.get("execution_s") for t in timings),
        },
        "tasks": [dict(marker) for marker in markers],
    }
    doc["fingerprint"] = _fingerprint(results, markers)
    return doc


def _failure(batch: Batch, item: Item, result: Mapping[str, Any] | None) -> dict[str, Any]:
    error = (result or {}).get("error") or {"type": "missing", "message": "no result.json"}
    return {"item": item.id, "index": item.index, "error": error, "result": f"{batch.prefix}{item.id}/{RESULT}"}


def _seconds_between(start: object, end: object) -> float | None:
    try:
        delta = datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
    except ValueError:
        return None
    return round(delta.total_seconds(), 3)


def _stats(values: Any) -> dict[str, float]:
    numbers = [float(value) for value in values if isinstance(value, int | float)]
    if not numbers:
        return {"total": 0.0, "mean": 0.0, "max": 0.0}
    return {
        "total": round(sum(numbers), 3),
        "mean": round(statistics.fmean(numbers), 3),
        "max": round(max(numbers), 3),
    }


def _fingerprint(results: Mapping[str, Mapping[str, Any]], markers: Sequence[Mapping[str, Any]]) -> str:
    """What the summary was computed from: equal fingerprints, equal summaries."""
    basis = {
        "results": sorted((key, str(doc.get("status")), str(doc.get("finished_at"))) for key, doc in results.items()),
        "tasks": sorted(
            (int(m.get("task_index", 0)), int(m.get("attempt", 0)), str(m.get("finished_at"))) for m in markers
        ),
    }
    return hashlib.sha256(json.dumps(basis).encode()).hexdigest()[:16]
