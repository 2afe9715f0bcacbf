"""An item's outbox folder: its output files, `status.json` while it runs, `result.json` last.

    gs://OUTBOX/<prefix><name>/            (OUTBOX_URI; docs/api.md section 7)
        <ComfyUI filename>                 each output, subfolders kept, with its content type
        status.json                        state and progress, rewritten while the item runs
        result.json                        written last: the only list of outputs a reader trusts
        cancel.json                        written by the service (POST /{endpoint}/cancel/{id}): stop

Every object is uploaded whole, so a killed job leaves complete files or none, and no file is an
output until result.json lists it. result.json is replaced by compare-and-swap on its generation
(the store's `if_generation`), so the result of an older generation of the inbox object never
overwrites a newer one's:

    read result.json (generation g) ──> write if_generation=g ──ok──> done
                                            └─WriteConflict─> read it again: a newer item's? stop
                                                                            else go round (5 tries)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from job.comfyui.outputs import OutputFile
from job.errors import ConfigurationError, InvalidInput, StorageError, WorkerError
from job.items.inbox import ItemSource
from job.storage import Storages, WriteConflict, as_folder

log = logging.getLogger(__name__)

RESULT = "result.json"
STATUS = "status.json"
CANCEL = "cancel.json"  # the caller's request to stop the item; its presence is what counts
_JSON = "application/json"
_CAS_TRIES = 5
_UPLOAD_WORKERS = 8


class Outbox:
    """Writes one item's outbox folder, on GCS (`gs://`) or on disk (any other URI).

    `result_known_absent`: the caller has just listed the folder and seen no result.json, so the
    first `read_result()` answers None without a read (generation 0 stands: the write that follows
    creates result.json only if it is still absent).
    """

    def __init__(self, storages: Storages, uri: str, source: ItemSource, *, result_known_absent: bool = False) -> None:
        try:
            self.uri = as_folder(uri)
        except InvalidInput:
            raise ConfigurationError(f"OUTBOX_URI={uri!r} names no bucket; use gs://OUTBOX/some/path/name/") from None
        self.storages = storages
        self.source = source
        self._result_generation = 0  # of result.json when last seen; 0: none
        self._result_known_absent = result_known_absent

    def uri_of(self, relpath: str) -> str:
        return self.uri + relpath

    # --- outputs ---------------------------------------------------------------------------------

    def write_outputs(self, files: list[OutputFile]) -> dict[str, str]:
        """Upload every file whole, in parallel; returns relpath -> URI for the result's entries."""
        uris = {item.relpath: self.uri_of(_safe_relpath(item.relpath)) for item in files}
        if not files:
            return uris

        def upload_one(item: OutputFile) -> None:
            self.storages.write(uris[item.relpath], item.data, item.content_type)

        with ThreadPoolExecutor(max_workers=min(_UPLOAD_WORKERS, len(files))) as pool:
            list(pool.map(upload_one, files))
        return uris

    # --- status.json -----------------------------------------------------------------------------

    def write_status(self, doc: Mapping[str, Any]) -> None:
        self.storages.write(self.uri_of(STATUS), _dumps(doc), _JSON, cache_control="no-store")

    # --- cancel.json -----------------------------------------------------------------------------

    def cancel_requested(self) -> bool:
        """Whether the caller asked to cancel this item (cancel.json is there): one metadata read."""
        return self.storages.generation(self.uri_of(CANCEL)) is not None

    # --- result.json -----------------------------------------------------------------------------

    def read_result(self) -> dict[str, Any] | None:
        """The result.json there now (None when absent or unreadable as a result)."""
        if self._result_known_absent:
            self._result_known_absent = False
            return None
        found = self.storages.read_versioned(self.uri_of(RESULT))
        self._result_generation = found.generation if found is not None else 0
        if found is None:
            return None
        try:
            doc = json.loads(found.data)
        except ValueError:
            log.warning("%s is not JSON; it will be replaced", self.uri_of(RESULT))
            return None
        return doc if isinstance(doc, dict) else None

    def write_result(self, doc: Mapping[str, Any]) -> bool:
        """Write result.json unless a newer generation of the inbox object has written its own.

        Returns False (and writes nothing) when a newer generation's result is there.
        """
        data = _dumps(doc)
        for _ in range(_CAS_TRIES):
            try:
                self._result_generation = self.storages.write(
                    self.uri_of(RESULT), data, _JSON, if_generation=self._result_generation, cache_control="no-store"
                )
                return True
            except WriteConflict:
                pass
            current = self.read_result()  # someone wrote it since we looked; whose is it?
            owner = result_source(current)
            if owner is not None and self.source.superseded_by(owner):
                log.warning("not writing %s: it holds the result of %s, newer than ours", RESULT, owner.uri)
                return False
        raise StorageError(f"{self.uri_of(RESULT)} kept changing while this job tried to write it")


def result_source(doc: Mapping[str, Any] | None) -> ItemSource | None:
    """The `source` a result.json names, parsed (None when it names none)."""
    source = (doc or {}).get("source")
    if not isinstance(source, str) or not source:
        return None
    try:
        return ItemSource.parse(source)
    except ConfigurationError:
        return None


def _safe_relpath(relpath: str) -> str:
    """An output's place in the folder: never outside it, never over status.json, result.json or cancel.json."""
    parts = [part for part in PurePosixPath(relpath).parts if part not in ("", ".", "..", "/")]
    safe = "/".join(parts) or "output"
    return f"output-{safe}" if safe in (RESULT, STATUS, CANCEL) else safe


def utc_now() -> str:
    """An RFC 3339 UTC timestamp to the millisecond, as result.json and status.json carry them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, default=str).encode()


class StatusWriter:
    """Keeps status.json current from a background thread, so progress never waits on storage.

    A state change is written at once; progress in between is coalesced to at most one write per
    `interval_s`. A failed write is logged and skipped: status.json is advice, result.json is truth.
    """

    def __init__(self, outbox: Outbox, base: Mapping[str, Any], interval_s: float) -> None:
        self._outbox = outbox
        self._doc: dict[str, Any] = {**base, "state": "starting", "progress": None}
        self._interval_s = interval_s
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._urgent = False
        self._closed = False
        self._last_write = 0.0
        self._thread: threading.Thread | None = None
        self.writes = 0

    def start(self, state: str) -> StatusWriter:
        self._thread = threading.Thread(target=self._loop, name="status-json", daemon=True)
        self._thread.start()
        self.update(state=state)
        return self

    def update(self, **fields: Any) -> None:
        """Merge `fields` into the document; a new `state` is urgent, anything else throttled."""
        with self._cond:
            urgent = "state" in fields and fields["state"] != self._doc.get("state")
            self._doc.update(fields, updated_at=utc_now())
            self._pending = dict(self._doc)
            self._urgent = self._urgent or urgent
            self._cond.notify()

    def close(self, **final: Any) -> None:
        """Stop the thread; with `final`, write it synchronously as the last status."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        if final:
            self._doc.update(final, updated_at=utc_now())
            self._write(dict(self._doc))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._pending is None:
                        self._cond.wait()
                        continue
                    wait_s = 0.0 if self._urgent else self._last_write + self._interval_s - time.monotonic()
                    if wait_s <= 0:
                        break
                    self._cond.wait(wait_s)
                if self._closed:
                    return
                doc, self._pending, self._urgent = self._pending, None, False
            self._write(doc)

    def _write(self, doc: dict[str, Any] | None) -> None:
        if doc is None:
            return
        try:
            self._outbox.write_status(doc)
            self.writes += 1
        except WorkerError as exc:
            log.warning("could not write %s: %s", STATUS, exc)
        self._last_write = time.monotonic()
