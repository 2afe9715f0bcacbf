"""Eventarc's part, locally: each new inbox object generation becomes one pushed CloudEvent.

fake-gcs-server sends no notifications, so the notifier polls the bucket's listing (every
`interval_s`) and, for each (name, generation) it has not seen, POSTs the binary-mode event
Eventarc would (`job.devstack.events`) to the function's URL. Like Eventarc it redelivers the same
event (same `ce-id`) while the function answers 5xx or 429 or cannot be reached, with exponential
backoff, but gives up after `attempts` (Eventarc keeps trying for 24 hours) and logs the loss.

Objects there before `start()` are taken as seen: Eventarc does not replay a bucket's history.
Two writes of one object between two polls raise one event, for the later generation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from cloudevents.http import CloudEvent

from job.devstack.events import binary_request, finalized_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What became of one event: the last HTTP status (None: never reached) after `attempts` tries."""

    event_id: str
    name: str
    generation: str
    status: int | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class InboxNotifier:
    """Polls one bucket of the emulator and pushes `object.finalized` events to `target_url`."""

    def __init__(
        self,
        gcs_url: str,
        bucket: str,
        target_url: str,
        *,
        interval_s: float = 0.25,
        attempts: int = 10,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        timeout_s: float = 120.0,
        workers: int = 8,
    ) -> None:
        self.gcs_url = gcs_url.rstrip("/")
        self.bucket = bucket
        self.target_url = target_url
        self.interval_s = interval_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self._seen: set[tuple[str, str]] = set()
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notifier-push")
        self._thread: threading.Thread | None = None
        self._listing_failed = False

    @property
    def deliveries(self) -> list[Delivery]:
        """Every finished delivery, oldest first."""
        with self._lock:
            return list(self._deliveries)

    def start(self) -> InboxNotifier:
        """Take what the bucket holds now as seen, then poll in a background thread."""
        if self._thread is not None:
            return self
        self._seen.update(_key(item) for item in self._list())
        self._thread = threading.Thread(target=self._loop, name="inbox-notifier", daemon=True)
        self._thread.start()
        log.info(
            "notifier: polling gs://%s every %g s, pushing events to %s", self.bucket, self.interval_s, self.target_url
        )
        return self

    def stop(self) -> None:
        """Stop polling and abandon pending retries; a push in flight ends with its HTTP call."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def poll_once(self) -> list[CloudEvent]:
        """List the bucket once and push an event for each unseen object generation (in the background)."""
        events = []
        with self._poll_lock:
            for item in self._list():
                if _key(item) in self._seen:
                    continue
                self._seen.add(_key(item))
                event = finalized_event(item)
                events.append(event)
                self._pool.submit(self.deliver, event)
        return events

    def deliver(self, event: CloudEvent) -> Delivery:
        """Push one event until the function takes it (2xx), refuses it (4xx) or `attempts` run out."""
        headers, body = binary_request(event)
        status: int | None = None
        attempt = 0
        delay = self.backoff_s
        while attempt < self.attempts and not self._stopping.is_set():
            attempt += 1
            try:
                status = self._http.post(self.target_url, headers=headers, content=body).status_code
            except httpx.HTTPError as exc:
                status = None
                log.warning("notifier: push of %s failed (%s); retrying", event["subject"], exc)
            if status is not None and status < 500 and status != 429:
                break
            if attempt < self.attempts and self._stopping.wait(delay):
                break
            delay = min(delay * 2, self.max_backoff_s)
        record = Delivery(event["id"], event.data["name"], event.data["generation"], status, attempt)
        with self._lock:
            self._deliveries.append(record)
        if record.ok:
            log.debug("notifier: %s#%s delivered (HTTP %s)", record.name, record.generation, status)
        elif status is not None and status < 500 and status != 429:
            log.error(
                "notifier: the function refused the event for %s#%s with HTTP %s (see its log)",
                record.name,
                record.generation,
                status,
            )
        elif not self._stopping.is_set():
            log.error(
                "notifier: gave up on the event for %s#%s after %d attempts (last: %s); Eventarc would keep "
                "retrying for a day. Check the function's log",
                record.name,
                record.generation,
                attempt,
                f"HTTP {status}" if status else "unreachable",
            )
        return record

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.poll_once()
            except RuntimeError:  # the pool shut down under us: we are stopping
                return

    def _list(self) -> Iterator[Mapping[str, Any]]:
        """Every live object in the bucket (all pages); nothing, with one warning, while GCS is away."""
        url = f"{self.gcs_url}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        params: dict[str, str] = {}
        while True:
            try:
                response = self._http.get(url, params=params, timeout=10.0)
                response.raise_for_status()
                page = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                if not self._listing_failed:
                    log.warning("notifier: cannot list gs://%s at %s: %s", self.bucket, self.gcs_url, exc)
                self._listing_failed = True
                return
            self._listing_failed = False
            yield from page.get("items") or []
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token


def _key(item: Mapping[str, Any]) -> tuple[str, str]:
    return str(item["name"]), str(item["generation"])
