"""A new execution only below MAX_EXECUTIONS; every other item is left pending for a running task.

    delivery ─ claim settled ─────────────────────────> handler: duplicate (2xx)
       │──── claim held by a job task, lease live ────> HeldByTask (5xx): that task is running it
       │──── MAX_EXECUTIONS active ───────────────────> AtCapacity (5xx): nothing written, item pending
       └──── fewer ─> handler claims the item ─> launch gate: count again ─ full ─> AtCapacity (5xx),
                                                        │                        the claim released
                                                        └─ room ─> jobs.run, then the gate opens

*Why 5xx, not an ack:* an item left pending must not be stranded if the last draining task exits
before it looks (the drop landed after that task's final re-check). Answering 5xx keeps the event
alive: Eventarc redelivers it with backoff until a delivery finds the item's claim settled (a
task ran it: acknowledged) or finds room below MAX_EXECUTIONS (it starts an execution). An item
held by a draining task is answered 5xx too, until the task settles it; if the task dies, its lease
lapses and a redelivery takes the item over. docs/drain.md has the whole argument.

*The launch gate* makes the limit hold under a burst of concurrent deliveries: counting and
starting happen under one claim (`ClaimStore`, the same compare-and-swap as every item's) on the
fixed object `<CLAIMS_PREFIX>.launch-gate/0`, and `jobs.run` creates the Execution before it
answers, so the next holder counts it. The gate object is deleted on the way out; a holder that
crashed leaves it to expire after CLAIM_LEASE_S.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import google.cloud.storage as storage  # no py.typed: `from google.cloud import` confuses mypy
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import run_v2

from .claims import SETTLED, ClaimState, ClaimStore, Lease, Settled
from .config import TriggerConfig
from .errors import PermanentError, TransientError, TriggerError, translate_google_errors
from .launcher import admin_api_client
from .objects import StorageObject
from .pending import TASK_HOLDER

log = logging.getLogger("trigger.capacity")

GATE_NAME = ".launch-gate"  # under CLAIMS_PREFIX; generation 0, which no inbox object has
_PAGE_SIZE = 500


class AtCapacity(TransientError):
    """MAX_EXECUTIONS executions are active: the item stays pending for one of them to drain."""


class HeldByTask(TransientError):
    """A job task is running the item under a live claim; a redelivery will find it settled."""


def make_executions_client(config: TriggerConfig) -> run_v2.ExecutionsClient:
    """The executions client, for counting the job's active executions."""
    with translate_google_errors("create the Cloud Run executions client", {}):
        return admin_api_client(run_v2.ExecutionsClient, config)


class ExecutionCounter:
    """Counts the job's active executions: those the Admin API lists without a completion time."""

    def __init__(self, client: run_v2.ExecutionsClient, job_path: str, *, timeout_s: float) -> None:
        self._client = client
        self.job_path = job_path
        self._timeout_s = timeout_s

    def active(self, enough: int) -> int:
        """How many are active, counting no further than `enough` (the answer is then `enough`)."""
        request = run_v2.ListExecutionsRequest(parent=self.job_path, page_size=_PAGE_SIZE)
        count = 0
        with translate_google_errors(f"list the executions of {self.job_path}", _fixes(self.job_path)):
            for execution in self._client.list_executions(request=request, timeout=self._timeout_s):
                if "completion_time" not in execution:
                    count += 1
                    if count >= enough:
                        break
        return count


class Admission:
    """Decides whether a delivery may start an execution; raises AtCapacity or HeldByTask if not."""

    def __init__(self, gcs: storage.Client, claims: ClaimStore, counter: ExecutionCounter, limit: int) -> None:
        self._gcs = gcs
        self.claims = claims
        self.counter = counter
        self.limit = limit

    @classmethod
    def from_config(cls, config: TriggerConfig, gcs: storage.Client, claims: ClaimStore) -> Admission:
        counter = ExecutionCounter(make_executions_client(config), config.job_path, timeout_s=config.run_job_timeout_s)
        return cls(gcs, claims, counter, config.max_executions)

    def admit(self, obj: StorageObject) -> None:
        """Before claiming `obj`: return to go on (claim, then start), or raise to have it redelivered."""
        current = self.claims.read(obj)
        if current is not None:
            claim = current[0]
            if claim.state in SETTLED:
                return  # the claim answers this delivery: a duplicate
            held_by_task = claim.state is ClaimState.CLAIMED and claim.by.startswith(TASK_HOLDER)
            if held_by_task and claim.expires_at > time.time():
                raise HeldByTask(f"{obj.uri} is being run by {claim.by}; a redelivery will find it done")
        self._check(obj)

    @contextmanager
    def gate(self, obj: StorageObject) -> Iterator[None]:
        """Hold the launch gate, count again, and start inside it; AtCapacity when there is no room now."""
        gate = StorageObject(obj.bucket, GATE_NAME, 0)
        held = self.claims.acquire(gate, by="launch gate")
        if isinstance(held, Settled):
            raise PermanentError(
                f"the launch gate gs://{obj.bucket}/{self.claims.claim_name(gate)} is {held.claim.state}, "
                "which only a person writes: delete it"
            )
        try:
            self._check(obj)
            yield
        finally:
            self._open(held)

    def _check(self, obj: StorageObject) -> None:
        try:
            active = self.counter.active(self.limit)
        except PermanentError as exc:  # fail open: starting is what the trigger did before limits existed
            log.error("cannot count executions, so MAX_EXECUTIONS is not enforced for %s: %s", obj.uri, exc)
            return
        if active >= self.limit:
            raise AtCapacity(
                f"{active} executions are active (MAX_EXECUTIONS={self.limit}): {obj.uri} is left pending for "
                "a running task to drain; the redelivery finds it done, or room to start"
            )

    def _open(self, held: Lease) -> None:
        """Delete the gate object we hold (only that generation); a failure leaves it to expire."""
        blob = self._gcs.bucket(held.obj.bucket).blob(held.object_name)
        try:
            where = f"gs://{held.obj.bucket}/{held.object_name}"
            # NotFound, PreconditionFailed: it expired and another delivery took it over; theirs now.
            with (
                translate_google_errors(f"open the launch gate {where}", {}),
                suppress(gexc.NotFound, gexc.PreconditionFailed),
            ):
                blob.delete(if_generation_match=held.generation, timeout=10.0)
        except TriggerError as exc:
            log.warning("%s; the gate opens when its lease expires (CLAIM_LEASE_S)", exc)


def _fixes(job_path: str) -> dict[type[BaseException], str]:
    return {
        gexc.Forbidden: (
            f"grant the function's service account roles/run.viewer on {job_path} (run.executions.list), "
            "so it can keep to MAX_EXECUTIONS"
        ),
        gexc.NotFound: (
            f"Cloud Run job {job_path} does not exist: deploy it, or fix GOOGLE_CLOUD_PROJECT, REGION and JOB_NAME"
        ),
        auth_exc.DefaultCredentialsError: "no Google credentials: set RUN_API_ENDPOINT to use the local stand-in",
    }
