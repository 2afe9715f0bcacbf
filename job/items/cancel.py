"""An inbox item's cancellation: the caller's `cancel.json` in its outbox folder, seen by the item.

The service cannot reach the job that runs an async request (another process, often another
machine), so it leaves a marker where the job already looks, its outbox folder
(`POST /{endpoint_id}/cancel/{job_id}`, docs/api.md section 12). The item looks for it once before
it starts, and then every CANCEL_POLL_S while it reads, fetches and runs; once seen, the `cancel`
event the request core already honours is set: fetches are abandoned, the prompt is dequeued or
interrupted, and the item ends with a `cancelled` result.json.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from job.errors import WorkerError
from job.items.outbox import Outbox

log = logging.getLogger(__name__)


class CancelWatch:
    """Sets `event` once the outbox's cancel.json appears; a context manager around the item's work."""

    def __init__(self, outbox: Outbox, event: threading.Event, interval_s: float) -> None:
        self.outbox = outbox
        self.event = event
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Look once (a metadata read); True, and the event set, when the caller has cancelled."""
        if not self.event.is_set():
            try:
                requested = self.outbox.cancel_requested()
            except WorkerError as exc:  # storage hiccup: the next look may see it
                log.warning("could not look for cancel.json: %s", exc.message)
                return False
            if requested:
                log.info("the caller cancelled this item (cancel.json in %s)", self.outbox.uri)
                self.event.set()
        return self.event.is_set()

    def __enter__(self) -> CancelWatch:
        self.check()  # before anything starts, synchronously: a cancelled item never runs
        self._thread = threading.Thread(target=self._loop, name="cancel-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.check():
                return
