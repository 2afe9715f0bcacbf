"""One inbox event in, at most one Cloud Run execution out.

event ──not finalized / not a request──> ignored (2xx)
  │   └─malformed: a name that breaks GCS's rules or holds a `..` segment, a generation or size
  │     that is not an int64 (events.py, objects.py), checked before any call──> failed (2xx)
  admission ──MAX_EXECUTIONS active, or a job task runs it──> 5xx, item left pending (capacity.py)
  │
  claim (object, generation) ──settled by another delivery──> duplicate (2xx)
  │                          ├─live holder after CLAIM_WAIT_S──> ClaimBusy (5xx, redelivered)
  │                          └─not a claim, or its name over 1024 bytes──> failed (2xx)
  launch gate, count again ──full──> claim released, AtCapacity (5xx, redelivered)
  (a .batch.json: BATCH_URI and the spec's `tasks` as the task count, batches.py)
  jobs.run ──permanent──> claim records `failed`, logged with the fix (2xx)
  │        └─transient──> claim released, TransientError (5xx, redelivered)
  claim records `started` with the execution name (2xx)

Only a TransientError (storage or the Admin API may answer later; capacity; a busy claim) and a
ConfigurationError (the deployment: a variable, or clients that cannot be built) leave `handle`,
so the function answers 5xx and Eventarc redelivers. Every other exception, at any step, is an
acknowledged `failed` (2xx): a PermanentError says what to fix; an unexpected one is logged with
its traceback, since no redelivery is known to cure it and Eventarc would otherwise retry it for
as long as it keeps the event. A claim held when it happens records `failed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from enum import StrEnum

import google.cloud.storage as storage  # no py.typed: `from google.cloud import` confuses mypy
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

from .batches import BatchSpecs, is_batch_spec
from .capacity import Admission
from .claims import ClaimState, ClaimStore, Settled
from .config import TriggerConfig
from .errors import ConfigurationError, PermanentError, TransientError, translate_google_errors
from .events import FINALIZED, CloudEventLike, event_type, parse_storage_object
from .launcher import JobLauncher, make_jobs_client
from .logs import LOGGER_NAME
from .objects import why_ignored

log = logging.getLogger(LOGGER_NAME)


class Action(StrEnum):
    IGNORED = "ignored"  # not a request (wrong type, outbox, claims, not .json, too large)
    STARTED = "started"  # this delivery created the execution
    DUPLICATE = "duplicate"  # another delivery of the same generation settled it already
    FAILED = "failed"  # a permanent failure: logged with its fix, acknowledged


# What leaves `handle` for a redelivery; every other exception is an acknowledged failure.
RETRIED: tuple[type[Exception], ...] = (TransientError, ConfigurationError)


@dataclass(frozen=True)
class Outcome:
    """What one delivery did; main.py logs it."""

    action: Action
    reason: str = ""
    source: str | None = None
    execution: str | None = None
    unexpected: BaseException | None = None  # a failure that is not ours: logged with its traceback

    @classmethod
    def failed(cls, exc: Exception, *, source: str | None = None) -> Outcome:
        """An acknowledged failure: a PermanentError's message, or an unexpected exception named as such."""
        if isinstance(exc, PermanentError):
            return cls(Action.FAILED, str(exc), source=source)
        reason = f"unexpected {type(exc).__name__}: {str(exc)[:300]} (acknowledged: no redelivery is known to cure it)"
        return cls(Action.FAILED, reason, source=source, unexpected=exc)


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
        """Build the GCS and Admin API clients the config describes (no network calls yet).

        A failure is the deployment's to fix (credentials, endpoints): a ConfigurationError, so the
        event is answered 5xx and kept for the fixed deployment, never acknowledged unread.
        """
        try:
            return cls._build(config)
        except RETRIED:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"cannot build the trigger's clients ({type(exc).__name__}: {exc}); check the function's service "
                "account, RUN_API_ENDPOINT and STORAGE_EMULATOR_HOST"
            ) from exc

    @classmethod
    def _build(cls, config: TriggerConfig) -> InboxTrigger:
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
        """Act on one delivery. TransientError and ConfigurationError propagate (redeliver); all else is an Outcome."""
        kind = event_type(event)
        if kind != FINALIZED:
            return Outcome(Action.IGNORED, f"event type {kind!r} is not {FINALIZED}")
        try:
            obj = parse_storage_object(event)
            reason = why_ignored(obj, self.config.layout)
        except RETRIED:
            raise
        except Exception as exc:  # a PermanentError, or an event no redelivery can make readable
            return Outcome.failed(exc)
        if reason:
            return Outcome(Action.IGNORED, reason, source=obj.uri)
        try:
            if self.admission is not None:
                self.admission.admit(obj)  # AtCapacity, HeldByTask: 5xx, redelivered
            held = self.claims.acquire(obj, by=f"event {event.get('id')}")
        except RETRIED:
            raise
        except Exception as exc:
            return Outcome.failed(exc, source=obj.uri)
        if isinstance(held, Settled):
            claim = held.claim
            why = f"claim is {claim.state}" + (f": {claim.error}" if claim.error else "")
            return Outcome(Action.DUPLICATE, why, source=obj.uri, execution=claim.execution)

        env = {"REQUEST_URI": obj.uri, "OUTBOX_URI": obj.outbox_uri(self.config.layout)}
        task_count: int | None = None
        try:
            if is_batch_spec(obj):  # BATCH_URI instead, and as many tasks as the spec asks for
                if self.batch_specs is None:
                    raise PermanentError(f"{obj.uri} is a batch spec, and this trigger was built without a reader")
                env, task_count = self.batch_specs.job_overrides(obj)
            with self.admission.gate(obj) if self.admission is not None else nullcontext():
                started = self.launcher.start(env, task_count=task_count)
        except RETRIED as exc:
            error = str(exc)
            self._record("the release", lambda: self.claims.release(held, error=error))
            raise
        except Exception as exc:  # settled `failed`: a redelivery finds the claim and starts nothing
            failure = Outcome.failed(exc, source=obj.uri)
            self._record("the failure", lambda: self.claims.settle(held, ClaimState.FAILED, error=failure.reason))
            return replace(failure, reason=f"{failure.reason}; drop the object again once fixed")
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
        except Exception as exc:
            log.warning("could not record %s in the claim: %s", what, exc)
            return None
