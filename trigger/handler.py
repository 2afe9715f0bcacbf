"""One inbox event in, at most one Cloud Run execution out.

event ──not finalized / not a request──> ignored (2xx)
  │
  admission ──MAX_EXECUTIONS active, or a job task runs it──> 5xx, item left pending (capacity.py)
  │
  claim (object, generation) ──settled by another delivery──> duplicate (2xx)
  │                          └─live holder after CLAIM_WAIT_S──> ClaimBusy (5xx, redelivered)
  launch gate, count again ──full──> claim released, AtCapacity (5xx, redelivered)
  (a .batch.json: BATCH_URI and the spec's `tasks` as the task count, batches.py)
  jobs.run ──permanent──> claim records `failed`, logged with the fix (2xx)
  │        └─transient──> claim released, TransientError (5xx, redelivered)
  claim records `started` with the execution name (2xx)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from enum import StrEnum

import google.cloud.storage as storage  # no py.typed: `from google.cloud import` confuses mypy
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

from .batches import BatchSpecs, is_batch_spec
from .capacity import Admission
from .claims import ClaimState, ClaimStore, Settled
from .config import TriggerConfig
from .errors import PermanentError, TransientError, TriggerError, translate_google_errors
from .events import FINALIZED, CloudEventLike, event_type, parse_storage_object, why_ignored
from .launcher import JobLauncher, make_jobs_client
from .logs import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)


class Action(StrEnum):
    IGNORED = "ignored"  # not a request (wrong type, outbox, claims, not .json, too large)
    STARTED = "started"  # this delivery created the execution
    DUPLICATE = "duplicate"  # another delivery of the same generation settled it already
    FAILED = "failed"  # a permanent failure: logged with its fix, acknowledged


@dataclass(frozen=True)
class Outcome:
    """What one delivery did; main.py logs it."""

    action: Action
    reason: str = ""
    source: str | None = None
    execution: str | None = None


class InboxTrigger:
    """Claims the object generation, then starts the job with REQUEST_URI and OUTBOX_URI."""

    def __init__(
        self,
        config: TriggerConfig,
        claims: ClaimStore,
        launcher: JobLauncher,
        admission: Admission | None = None,
        batch_specs: BatchSpecs | None = None,
    ) -> None:
        self.config = config
        self.claims = claims
        self.launcher = launcher
        self.admission = admission  # None: no limit on executions
        self.batch_specs = batch_specs  # reads a .batch.json drop's task count; None: such drops fail

    @classmethod
    def from_config(cls, config: TriggerConfig) -> InboxTrigger:
        """Build the GCS and Admin API clients the config describes (no network calls yet)."""
        with translate_google_errors("create the Cloud Storage client", {}):
            if config.storage_emulator_host:
                gcs = storage.Client(
                    project=config.project,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options=ClientOptions(api_endpoint=config.storage_emulator_host),
                )
            else:
                gcs = storage.Client(project=config.project)
        claims = ClaimStore(gcs, config.claims_prefix, lease_s=config.claim_lease_s, wait_s=config.claim_wait_s)
        launcher = JobLauncher(make_jobs_client(config), config.job_path, timeout_s=config.run_job_timeout_s)
        return cls(config, claims, launcher, Admission.from_config(config, gcs, claims), BatchSpecs(gcs))

    def handle(self, event: CloudEventLike) -> Outcome:
        """Act on one delivery. TransientError propagates (redeliver); all else is an Outcome."""
        kind = event_type(event)
        if kind != FINALIZED:
            return Outcome(Action.IGNORED, f"event type {kind!r} is not {FINALIZED}")
        try:
            obj = parse_storage_object(event)
            reason = why_ignored(obj, self.config)
        except PermanentError as exc:
            return Outcome(Action.FAILED, str(exc))
        if reason:
            return Outcome(Action.IGNORED, reason, source=obj.uri)
        try:
            if self.admission is not None:
                self.admission.admit(obj)  # AtCapacity, HeldByTask: 5xx, redelivered
            held = self.claims.acquire(obj, by=f"event {event.get('id')}")
        except PermanentError as exc:
            return Outcome(Action.FAILED, str(exc), source=obj.uri)
        if isinstance(held, Settled):
            claim = held.claim
            why = f"claim is {claim.state}" + (f": {claim.error}" if claim.error else "")
            return Outcome(Action.DUPLICATE, why, source=obj.uri, execution=claim.execution)

        env = {"REQUEST_URI": obj.uri, "OUTBOX_URI": obj.outbox_uri(self.config)}
        task_count: int | None = None
        try:
            if is_batch_spec(obj):  # BATCH_URI instead, and as many tasks as the spec asks for
                if self.batch_specs is None:
                    raise PermanentError(f"{obj.uri} is a batch spec, and this trigger was built without a reader")
                env, task_count = self.batch_specs.job_overrides(obj)
            with self.admission.gate(obj) if self.admission is not None else nullcontext():
                started = self.launcher.start(env, task_count=task_count)
        except PermanentError as exc:
            error = str(exc)
            self._record("the failure", lambda: self.claims.settle(held, ClaimState.FAILED, error=error))
            return Outcome(Action.FAILED, f"{error}; drop the object again once fixed", source=obj.uri)
        except TransientError as exc:
            error = str(exc)
            self._record("the release", lambda: self.claims.release(held, error=error))
            raise
        kept = self._record(
            "the start", lambda: self.claims.settle(held, ClaimState.STARTED, execution=started.execution)
        )
        if kept is False:
            log.warning(
                "the claim on %s was taken over while jobs.run ran (longer than CLAIM_LEASE_S=%g s): "
                "a second execution may start; the job skips an item whose result.json exists",
                obj.uri,
                self.config.claim_lease_s,
            )
        return Outcome(Action.STARTED, source=obj.uri, execution=started.execution)

    def _record(self, what: str, write: Callable[[], bool]) -> bool | None:
        """Write to the claim after the fact; a failure is logged, never raised (the outcome stands)."""
        try:
            return write()
        except TriggerError as exc:
            log.warning("could not record %s in the claim: %s", what, exc)
            return None
