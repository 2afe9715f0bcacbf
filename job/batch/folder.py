"""A batch's prefix on GCS or on disk, and the few conditional writes that coordinate its tasks.

    <prefix>batch.json            the manifest: batch id, spec, item ids (written by the first task)
    <prefix><item-id>/...         each item's outbox folder, as an inbox drop's (job.outbox)
    <prefix>_tasks/<index>.json   a task's marker, written when it has run its share
    <prefix>summary.json          written by the task that finishes last (job.batch.summary)

Compare-and-swap on GCS is a generation precondition (`if_generation_match`, 0: only if absent);
on disk it is a hash of the file's bytes, checked under an flock, for local runs whose tasks are threads.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc

from job.errors import StorageError
from job.outbox import RESULT
from job.storage import WRITE_RETRY, Storages, gcs_errors, split_gs_uri

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
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._bucket: str | None = None
        self._name = ""  # the object name prefix inside the bucket
        if self.prefix.startswith("gs://"):
            self._bucket, self._name = split_gs_uri(self.prefix)

    def uri_of(self, relpath: str) -> str:
        return self.prefix + relpath

    # --- which items are done --------------------------------------------------------------------

    def finished_items(self) -> set[str]:
        """Ids of the items whose result.json exists: one listing, however many items there are."""
        if self._bucket is None:
            root = Path(self.prefix)
            return {path.parent.name for path in root.glob(f"*/{RESULT}")} if root.is_dir() else set()
        bucket = self.storages.gcs.client.bucket(self._bucket)
        found = set()
        with gcs_errors(self.prefix):
            glob = None if set(self._name) & set("*?[]{}\\") else f"{self._name}*/{RESULT}"  # only results
            for blob in bucket.list_blobs(prefix=self._name, match_glob=glob):
                item_id, _, rest = blob.name[len(self._name) :].partition("/")
                if rest == RESULT:
                    found.add(item_id)
        return found

    def read_results(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """result.json of each item that has one, read in parallel."""

        def one(item_id: str) -> tuple[str, dict[str, Any] | None]:
            return item_id, self.read_json(f"{item_id}/{RESULT}")[0]

        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            return {item_id: doc for item_id, doc in pool.map(one, item_ids) if doc is not None}

    def task_markers(self) -> list[dict[str, Any]]:
        """Every task marker there, by task index."""
        if self._bucket is None:
            root = Path(self.prefix) / TASKS
            names = [f"{TASKS}{path.name}" for path in root.glob("*.json")] if root.is_dir() else []
        else:
            bucket = self.storages.gcs.client.bucket(self._bucket)
            with gcs_errors(self.uri_of(TASKS)):
                names = [blob.name[len(self._name) :] for blob in bucket.list_blobs(prefix=self._name + TASKS)]
        markers = [doc for doc in (self.read_json(name)[0] for name in names) if doc is not None]
        return sorted(markers, key=lambda doc: int(doc.get("task_index", 0)))

    # --- JSON files, plain and conditional --------------------------------------------------------

    def read_json(self, relpath: str) -> tuple[dict[str, Any] | None, int]:
        """The document and its generation (on disk: a hash of its bytes); (None, 0) when absent."""
        uri = self.uri_of(relpath)
        if self._bucket is None:
            try:
                raw = Path(uri).read_bytes()
            except FileNotFoundError:
                return None, 0
            except OSError as exc:
                raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc
            generation = _content_generation(raw)
        else:
            blob = self.storages.gcs.client.bucket(self._bucket).blob(self._name + relpath)
            with gcs_errors(uri):
                try:
                    raw = blob.download_as_bytes()
                except gexc.NotFound:
                    return None, 0
            generation = int(blob.generation or 0)
        try:
            doc = json.loads(raw)
        except ValueError:
            log.warning("%s is not JSON; treating it as absent", uri)
            return None, generation
        return (doc if isinstance(doc, dict) else None), generation

    def write_json(self, relpath: str, doc: dict[str, Any]) -> None:
        """Write unconditionally (task markers, which only their own task writes)."""
        self.storages.write(self.uri_of(relpath), _dumps(doc), _JSON)

    def replace_json(self, relpath: str, doc: dict[str, Any], generation: int) -> bool:
        """Write only if the file is still at `generation` (0: only if absent); False when it moved on."""
        uri = self.uri_of(relpath)
        if self._bucket is None:
            with _locked(Path(self.prefix) / ".batch.lock"):
                current = self.read_json(relpath)[1]
                if current != generation:
                    return False
                self.storages.local.write(uri, _dumps(doc), _JSON)
                return True
        blob = self.storages.gcs.client.bucket(self._bucket).blob(self._name + relpath)
        blob.cache_control = "no-store"
        with gcs_errors(uri):
            try:
                blob.upload_from_string(
                    _dumps(doc), content_type=_JSON, if_generation_match=generation, retry=WRITE_RETRY
                )
            except gexc.PreconditionFailed:
                return False
        return True


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock: serialises conditional writes between the threads and processes of a local run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError as exc:
        raise StorageError(f"cannot lock {path}: {exc.strerror}") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _content_generation(raw: bytes) -> int:
    """A local file's stand-in for a GCS generation: changes whenever its bytes do, never 0."""
    return int.from_bytes(hashlib.sha256(raw).digest()[:7], "big") | 1


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, default=str).encode()
