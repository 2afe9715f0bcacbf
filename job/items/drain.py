"""A warm task drains the inbox: after its own item it runs pending ones on the same ComfyUI.

    boot ComfyUI ─> own item (REQUEST_URI) ─> scan ─pending─> claim ─> run on the warm runner ─> settle `done` ─┐
       ^ DRAIN=true (the sweep): no own item;  ^     │ none                                                    │
       | nothing pending: exit before booting  |     └─> keep looking for DRAIN_GRACE_S ─still none─> exit     │
                                               └───────────────────────────────────────────────────────────────┘

An item is pending when no one runs it (`trigger.pending`); a task takes it with the trigger's own
claims (`trigger.claims.ClaimStore`, `by` = "task <execution>/<index>"), renews the lease while the
item runs, and settles the claim `done`, so each item runs once however many tasks drain. A task
that dies mid-item leaves its lease to expire; then a draining task or a redelivered event takes
the item over. DRAIN_MAX_ITEMS and DRAIN_MAX_SECONDS bound a task's work so it ends inside the
task timeout; an item left pending then is started by its event's redelivery (docs/drain.md).

result.json of a drained item names the draining task (`execution`, with `"drained": true`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace

from job.comfyui.process import ComfyServer
from job.engine.boot import comfyui_runner
from job.engine.runner import Runner
from job.errors import ConfigurationError, StorageError, WorkerError
from job.items.inbox import ItemSource
from job.items.work_item import Disposition, ItemOutcome, TaskPlace, run_item
from job.settings import Settings
from job.storage import Storages
from trigger.claims import ClaimState, ClaimStore, Lease, Settled
from trigger.errors import ClaimBusy, PermanentError, TransientError, TriggerError
from trigger.objects import InboxLayout, StorageObject
from trigger.pending import TASK_HOLDER, pending_objects

log = logging.getLogger(__name__)


def run_task(
    settings: Settings,
    request_uri: str | None,
    outbox_uri: str | None = None,
    *,
    storages: Storages | None = None,
    server: ComfyServer | None = None,
) -> int:
    """One job task: its own item (`request_uri`, REQUEST_URI; its outbox `outbox_uri`, OUTBOX_URI), then
    pending ones; only pending ones with DRAIN=true.

    Returns the exit code: 0 when everything taken is finished, 1 to have the task retried.
    `server`: a ComfyUI the caller started early, so its boot overlaps this process's imports.
    """
    storages = storages or Storages(settings.google_cloud_project)
    own = ItemSource.parse(request_uri) if request_uri else None
    if own is None and not settings.drain:
        raise ConfigurationError(
            "REQUEST_URI is not set: the trigger sets it to gs://INBOX/name.json#generation; set DRAIN=true "
            "to run pending inbox items instead, or give a path for a local run (`worker-comfyui job wf.json`)"
        )
    drains = settings.drain or (own is not None and own.is_gcs and settings.drain_max_items > 1)
    drainer = Drainer(settings, storages, bucket=own.bucket if own and own.bucket else None) if drains else None
    if own is None and drainer is not None and not drainer.any_pending():
        log.info("drain: nothing pending in gs://%s; exiting without booting ComfyUI", drainer.bucket)
        return 0
    with ExitStack() as stack:
        try:
            runner: Runner | None = stack.enter_context(comfyui_runner(settings, server=server))
        except WorkerError as exc:  # not even started: the own item boots (and fails) on its own, and says so
            log.error("could not start ComfyUI: %s", exc.message)
            if own is None:
                raise
            runner = None
        if own is not None:
            outcome = run_item(settings, request_uri, outbox_uri, storages=storages, runner=runner)
            log.info("item %s: exit %d", outcome.disposition.value, outcome.exit_code)
            if outcome.exit_code or runner is None or drainer is None:
                return outcome.exit_code
            drainer.items = 1
        assert drainer is not None and runner is not None
        return drainer.drain(runner)
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions; mypy cannot tell


class Drainer:
    """Claims pending items one at a time and runs each on a warm runner, within the task's caps."""

    def __init__(self, settings: Settings, storages: Storages, *, bucket: str | None = None) -> None:
        self.settings = settings
        self.storages = storages
        self.bucket = bucket or settings.inbox_bucket
        # The trigger's rules, from the same variables it reads (OUTBOX_BUCKET, OUTBOX_PREFIX, CLAIMS_PREFIX).
        self.layout = InboxLayout(settings.outbox_bucket, settings.outbox_prefix, settings.claims_prefix or "_claims/")
        self.gcs = storages.gcs_client  # the raw client: trigger/ code, which cannot import job.storage
        self.claims = ClaimStore(self.gcs, self.layout.claims_prefix, lease_s=settings.drain_lease_s, wait_s=0)
        self.place = TaskPlace.of(settings)
        self.execution = settings.cloud_run_execution or "local"
        self.holder = f"{TASK_HOLDER}{self.execution}/{settings.cloud_run_task_index}"
        self.started = time.monotonic()
        self.items = 0  # taken by this task so far, its own included
        self._settled: set[tuple[str, int]] = set()  # claims seen settled: never pending again

    def any_pending(self) -> bool:
        """Whether anything is there to take (read-only: the sweep asks before booting ComfyUI)."""
        with _claims_errors(f"scan gs://{self.bucket}"):
            for obj in self._scan():
                current = self.claims.read(obj)
                if current is None or current[0].state is ClaimState.RELEASED:
                    return True
                if current[0].state is ClaimState.CLAIMED and current[0].expires_at <= time.time():
                    return True
        return False

    def drain(self, runner: Runner) -> int:
        """Run pending items until none is left after the grace re-check, or a cap is reached."""
        idle_since: float | None = None
        while (cap := self._cap_reached()) is None:
            try:
                lease = self._claim_next()
            except WorkerError as exc:
                log.error("drain: stopped: %s", exc.message)
                return 1 if exc.retryable else 0
            if lease is None:
                now = time.monotonic()
                idle_since = idle_since if idle_since is not None else now
                if now - idle_since >= self.settings.drain_grace_s:
                    log.info(
                        "drain: nothing pending after %g s of grace; exiting after %d item(s)",
                        self.settings.drain_grace_s,
                        self.items,
                    )
                    return 0
                time.sleep(min(1.0, max(0.05, self.settings.drain_grace_s / 4)))
                continue
            idle_since = None
            code = self._run(lease, runner)
            if code:
                return code
        log.info("drain: %s; exiting after %d item(s), leaving the rest pending", cap, self.items)
        return 0

    # --- one item --------------------------------------------------------------------------------

    def _claim_next(self) -> Lease | None:
        """Take the oldest pending item no one else takes first; None when there is none."""
        with _claims_errors(f"scan gs://{self.bucket}"):
            candidates = self._scan()
        for obj in candidates:
            try:
                with _claims_errors(f"claim {obj.uri}"):
                    held = self.claims.acquire(obj, by=self.holder)
            except ConfigurationError as exc:  # a corrupt claim on this one object: skip it, say what to do
                log.error("drain: skipping %s: %s", obj.uri, exc.message)
                self._settled.add((obj.name, obj.generation))
                continue
            except _Taken:
                continue
            if isinstance(held, Settled):
                self._settled.add((obj.name, obj.generation))
                continue
            return held
        return None

    def _run(self, lease: Lease, runner: Runner) -> int:
        """Run one claimed item on the warm runner and settle its claim; the exit code so far."""
        obj = lease.obj
        # The retry rules stay the task's (CLOUD_RUN_TASK_ATTEMPT against JOB_MAX_RETRIES): claim attempts
        # also count deliveries that gave the claim back at the launch gate, which are no tries at all.
        self.items += 1
        log.info("drain: item %d of this task: %s (claim attempt %d)", self.items, obj.uri, lease.claim.attempt)
        outcome: ItemOutcome | None = None
        with _LeaseKeeper(self.claims, lease) as keeper:
            try:
                place = replace(self.place, claim_attempt=lease.claim.attempt)
                outcome = run_item(
                    self.settings,
                    obj.uri,
                    obj.outbox_uri(self.layout),
                    storages=self.storages,
                    runner=runner,
                    place=place,
                )
            finally:
                if outcome is None:  # interrupted (SIGTERM): give the item back at once
                    self._record(lambda: self.claims.release(keeper.lease, error="the draining task stopped"))
        if outcome.disposition is Disposition.RETRY:
            error = outcome.error.message if outcome.error else "infrastructure failure"
            self._record(lambda: self.claims.release(keeper.lease, error=error))
            log.error("drain: %s failed and is released for a retry; this task stops (exit 1)", obj.uri)
            return 1
        self._record(lambda: self.claims.settle(keeper.lease, ClaimState.DONE, execution=self.execution))
        log.info("drain: %s %s", obj.uri, outcome.disposition.value)
        return outcome.exit_code  # GAVE_UP: the item has its error result.json; ComfyUI is suspect, so stop

    def _scan(self) -> list[StorageObject]:
        pending = pending_objects(self.gcs, self.bucket, self.layout, now=time.time())
        return [obj for obj in pending if (obj.name, obj.generation) not in self._settled]

    def _cap_reached(self) -> str | None:
        if self.items >= self.settings.drain_max_items:
            return f"DRAIN_MAX_ITEMS={self.settings.drain_max_items} reached"
        elapsed = time.monotonic() - self.started
        if elapsed >= self.settings.drain_max_seconds:
            return f"DRAIN_MAX_SECONDS={self.settings.drain_max_seconds:g} reached ({elapsed:.0f} s)"
        return None

    @staticmethod
    def _record(write: Callable[[], bool]) -> None:
        """Write to a claim after the fact; a failure is logged (the lease then expires), never raised."""
        try:
            with _claims_errors("update the claim"):
                if write() is False:
                    log.warning("drain: the claim was taken over meanwhile (its lease expired); nothing recorded")
        except WorkerError as exc:
            log.warning("drain: %s", exc.message)


class _LeaseKeeper:
    """Renews a claim's lease every third of DRAIN_LEASE_S while its item runs; `lease` is the latest."""

    def __init__(self, claims: ClaimStore, lease: Lease) -> None:
        self.claims = claims
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="claim-lease", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.claims.lease_s / 3):
            try:
                renewed = self.claims.renew(self.lease)
            except TriggerError as exc:
                log.warning("drain: could not renew the claim on %s (will retry): %s", self.lease.obj.uri, exc)
                continue
            if renewed is None:
                log.warning("drain: lost the claim on %s (lease expired and taken over)", self.lease.obj.uri)
                return
            self.lease = renewed


class _Taken(Exception):
    """Another task or delivery holds the claim (internal)."""


@contextmanager
def _claims_errors(what: str) -> Iterator[None]:
    """The trigger's errors (claims, listings) as the job's: transient ones retry the task."""
    try:
        yield
    except ClaimBusy:
        raise _Taken from None
    except TransientError as exc:
        raise StorageError(f"{what}: {exc}") from exc
    except PermanentError as exc:
        raise ConfigurationError(f"{what}: {exc}") from exc
    except TriggerError as exc:
        raise ConfigurationError(f"{what}: {exc}") from exc
