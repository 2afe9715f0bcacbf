"""`.batch.json` drops: a batch spec in the inbox runs as a batch job, with the spec's own task count.

The job reads and checks the whole spec itself (BATCH_URI names the very generation that raised the
event, docs/batch.md); the trigger reads only `tasks`, to ask Cloud Run for that many tasks. A spec
that is not JSON, or whose `tasks` is not a whole number from 1 to MAX_BATCH_TASKS, is a permanent
failure: the claim records it and the log says what to fix.
"""

from __future__ import annotations

import json

import google.cloud.storage as storage  # no py.typed: `from google.cloud import` confuses mypy
from google.api_core import exceptions as gexc
from google.cloud.storage.retry import DEFAULT_RETRY

from .errors import PermanentError, translate_google_errors
from .objects import StorageObject

BATCH_SUFFIX = ".batch.json"
MAX_BATCH_TASKS = 10_000  # Cloud Run's most tasks per execution
_RETRY = DEFAULT_RETRY.with_timeout(20.0)
_IO_TIMEOUT_S = 10.0


def is_batch_spec(obj: StorageObject) -> bool:
    return obj.name.endswith(BATCH_SUFFIX)


class BatchSpecs:
    """Reads the task count of a batch spec dropped into the inbox."""

    def __init__(self, client: storage.Client) -> None:
        self._client = client

    def job_overrides(self, obj: StorageObject) -> tuple[dict[str, str], int]:
        """The job's env (BATCH_URI at this generation) and task count for a `.batch.json` object."""
        return {"BATCH_URI": obj.uri}, self.task_count(obj)

    def task_count(self, obj: StorageObject) -> int:
        """The spec's `tasks` (1 when absent); PermanentError when the spec cannot say."""
        blob = self._client.bucket(obj.bucket).blob(obj.name, generation=obj.generation)
        fixes: dict[type[BaseException], str] = {
            gexc.NotFound: "the object was overwritten or deleted before the trigger read it; a newer generation "
            "runs on its own event",
            gexc.Forbidden: f"grant the function's service account roles/storage.objectViewer on bucket {obj.bucket}",
        }
        with translate_google_errors(f"read batch spec {obj.uri}", fixes):
            raw = blob.download_as_bytes(timeout=_IO_TIMEOUT_S, retry=_RETRY)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise PermanentError(f"batch spec {obj.uri} is not JSON ({exc}); fix it and drop it again") from None
        if not isinstance(doc, dict):
            raise PermanentError(f"batch spec {obj.uri} must be a JSON object (docs/batch.md); drop it again fixed")
        tasks = doc.get("tasks", 1)
        if isinstance(tasks, bool) or not isinstance(tasks, int) or not 1 <= tasks <= MAX_BATCH_TASKS:
            raise PermanentError(
                f"batch spec {obj.uri}: `tasks` is {tasks!r}; give a whole number from 1 to {MAX_BATCH_TASKS}"
            )
        return tasks
