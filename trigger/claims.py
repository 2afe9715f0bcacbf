"""At-least-once delivery must not mean twice: one claim object per inbox object generation.

A claim is a small JSON object at `<prefix><object name>/<generation>` in the inbox bucket. GCS
preconditions make every state change a compare-and-swap, so exactly one party holds a claim:

    (none) --create, if_generation_match=0--> claimed --settle--> started | failed | done
                                                  |  ^
                                    release       |  | take over (lease expired or released),
                    (transient failure)           v  |  if_generation_match=<generation read>
                                               released

- A *claimed* claim carries a lease (`expires_at`). While it is live, others wait up to `wait_s`
  for it to settle, then raise ClaimBusy (the function answers 5xx; Eventarc redelivers later).
  Once it has expired (its holder crashed between claim and start), the next delivery takes it
  over with a generation precondition, so only one of many racers does.
- A *settled* claim (started, failed, done) answers every later delivery: nothing starts again.
- A *released* claim (the start failed transiently) is taken over at once by the next delivery.

The holder writes `started` with `if_generation_match=<its claim generation>`; losing that race
means its lease expired and another delivery took over. Every write is retried on transient
errors (google-api-core Retry), and a retried create that had landed is recognised by its holder
token. The job's tasks use the same store (`from trigger.claims import ClaimStore`); a holder that
works for longer than one lease calls `renew()` and settles with `done`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import google.cloud.storage as storage  # no py.typed: `from google.cloud import` confuses mypy
from google.api_core import exceptions as gexc
from google.cloud.storage.retry import DEFAULT_RETRY

from .errors import ClaimBusy, PermanentError, TransientError, translate_google_errors
from .objects import MAX_OBJECT_NAME_BYTES, StorageObject

log = logging.getLogger("trigger.claims")

_RETRY = DEFAULT_RETRY.with_timeout(20.0)  # transient GCS errors on claim reads and writes
_IO_TIMEOUT_S = 10.0
_MAX_ROUNDS = 200  # reads per acquire; a bound on a pathological create/delete race


class ClaimState(StrEnum):
    CLAIMED = "claimed"  # held under a lease; the work has not started yet
    RELEASED = "released"  # the holder gave up after a transient failure; anyone may take over
    STARTED = "started"  # the Cloud Run execution was created (`execution` names it)
    FAILED = "failed"  # a permanent failure; `error` says what to fix. A new generation retries.
    DONE = "done"  # the work finished (for holders that do the work themselves, e.g. job tasks)


SETTLED = frozenset({ClaimState.STARTED, ClaimState.FAILED, ClaimState.DONE})


@dataclass(frozen=True)
class Claim:
    """The claim object's content."""

    source: str  # gs://bucket/name#generation
    state: ClaimState
    holder: str  # a token unique to one acquire() call
    attempt: int = 1  # how many holders have held it
    expires_at: float = 0.0  # epoch seconds; the lease's end while state is CLAIMED
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    by: str = ""  # who holds it, for people reading the bucket (an event id, a task index)
    execution: str | None = None
    error: str | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    def listing_metadata(self) -> dict[str, str]:
        """Custom metadata on the claim object: a bucket listing then shows state and lease unread (pending.py)."""
        return {"state": self.state.value, "expires_at": f"{self.expires_at:.3f}"}

    @classmethod
    def from_bytes(cls, raw: bytes) -> Claim:
        data: Any = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a claim is a JSON object, not {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["state"] = ClaimState(known["state"])
        return cls(**known)


@dataclass(frozen=True)
class Lease:
    """Proof of holding a claim: the claim object's generation we wrote."""

    obj: StorageObject  # the inbox object generation claimed
    object_name: str  # the claim object's name
    generation: int
    claim: Claim


@dataclass(frozen=True)
class Settled:
    """The claim was settled by someone else; `claim` says how."""

    claim: Claim


class ClaimStore:
    """Claims for inbox objects, kept in each object's own bucket under `prefix`."""

    def __init__(
        self,
        client: storage.Client,
        prefix: str,
        *,
        lease_s: float,
        wait_s: float,
        poll_s: float = 0.1,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self.lease_s = lease_s
        self.wait_s = wait_s
        self._poll_s = poll_s
        self._clock = clock
        self._sleep = sleep

    def claim_name(self, obj: StorageObject) -> str:
        """`<prefix><name>/<generation>`: unique per object generation, never a `.json` request.

        PermanentError when that is longer than GCS allows: a name near GCS's 1024 bytes leaves no
        room for the prefix and generation, and every attempt would meet the same refusal.
        """
        name = f"{self.prefix}{obj.name}/{obj.generation}"
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > MAX_OBJECT_NAME_BYTES:
            room = MAX_OBJECT_NAME_BYTES - (size - len(obj.name.encode("utf-8", "surrogatepass")))
            raise PermanentError(
                f"gs://{obj.bucket}/{obj.name[:60]}...#{obj.generation}: its claim under CLAIMS_PREFIX={self.prefix!r} "
                f"would be {size} bytes, over GCS's {MAX_OBJECT_NAME_BYTES}; rename the object to at most {room} bytes"
            )
        return name

    def acquire(self, obj: StorageObject, *, by: str = "") -> Lease | Settled:
        """Hold the claim for `obj`, or learn that it is settled; ClaimBusy if a live holder keeps it."""
        holder = uuid.uuid4().hex
        fresh = Claim(source=obj.uri, state=ClaimState.CLAIMED, holder=holder, by=by, expires_at=self._expiry())
        lease = self._write(obj, fresh, if_generation_match=0)
        if lease is not None:
            return lease
        delay = self._poll_s
        deadline = self._clock() + self.wait_s
        last: Claim | None = None
        for _ in range(_MAX_ROUNDS):
            current = self.read(obj)
            if current is None:  # deleted since our create failed: create again
                lease = self._write(obj, replace(fresh, expires_at=self._expiry()), if_generation_match=0)
                if lease is not None:
                    return lease
                continue
            last, generation = current
            if last.holder == holder and last.state is ClaimState.CLAIMED:
                return Lease(obj, self.claim_name(obj), generation, last)  # our retried create
            if last.state in SETTLED:
                return Settled(last)
            if last.state is ClaimState.RELEASED or last.expires_at <= self._clock():
                taken = replace(fresh, attempt=last.attempt + 1, expires_at=self._expiry())
                lease = self._write(obj, taken, if_generation_match=generation)
                if lease is not None:
                    log.warning("took over the claim on %s (attempt %d; it was %s)", obj.uri, taken.attempt, last.state)
                    return lease
                continue  # another delivery took it first: read who
            if self._clock() + delay > deadline:
                break
            self._sleep(delay)
            delay = min(delay * 1.5, 1.0)
        holder_desc = (last.by if last else "") or "another delivery"
        until = datetime.fromtimestamp(last.expires_at, UTC).strftime("%H:%M:%S") if last else "?"
        raise ClaimBusy(
            f"{obj.uri} is claimed by {holder_desc} (lease until {until} UTC) and its job is not started "
            f"yet; a redelivery will find it started, or take the claim over once the lease expires"
        )

    def settle(
        self, lease: Lease, state: ClaimState, *, execution: str | None = None, error: str | None = None
    ) -> bool:
        """Record the outcome; False when the lease was lost (it expired and was taken over)."""
        claim = replace(lease.claim, state=state, execution=execution, error=error, updated_at=_now())
        return self._rewrite(lease, claim) is not None

    def renew(self, lease: Lease) -> Lease | None:
        """Extend a held lease by `lease_s` (for holders that work longer than one lease); None if lost."""
        claim = replace(lease.claim, expires_at=self._expiry(), updated_at=_now())
        generation = self._rewrite(lease, claim)
        return None if generation is None else replace(lease, generation=generation, claim=claim)

    def release(self, lease: Lease, *, error: str) -> bool:
        """Give the claim up after a transient failure, so the next delivery need not wait out the lease."""
        claim = replace(lease.claim, state=ClaimState.RELEASED, error=error, updated_at=_now())
        return self._rewrite(lease, claim) is not None

    def read(self, obj: StorageObject) -> tuple[Claim, int] | None:
        """The claim and its object generation, or None when there is none."""
        name = self.claim_name(obj)
        blob = self._client.bucket(obj.bucket).blob(name)
        with self._translated(obj, "read"):
            try:
                raw = blob.download_as_bytes(timeout=_IO_TIMEOUT_S, retry=_RETRY)
            except gexc.NotFound:
                return None
        try:
            claim = Claim.from_bytes(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(
                f"claim gs://{obj.bucket}/{name} is not a claim ({exc}); delete it to let the object run"
            ) from None
        assert blob.generation is not None
        return claim, int(blob.generation)

    def _rewrite(self, lease: Lease, claim: Claim) -> int | None:
        """Replace the claim if we still hold it: its new generation, or None when the lease was lost."""
        blob = self._client.bucket(lease.obj.bucket).blob(lease.object_name)
        blob.metadata = claim.listing_metadata()
        try:
            with self._translated(lease.obj, "update"):
                blob.upload_from_string(
                    claim.to_bytes(),
                    content_type="application/json",
                    if_generation_match=lease.generation,
                    timeout=_IO_TIMEOUT_S,
                    retry=_RETRY,
                )
        except _LostRace:
            # A retried write whose first attempt landed also ends here: check what is there now.
            current = self.read(lease.obj)
            return current[1] if current is not None and current[0] == claim else None
        assert blob.generation is not None
        return int(blob.generation)

    def _write(self, obj: StorageObject, claim: Claim, *, if_generation_match: int) -> Lease | None:
        """Create or replace the claim under a precondition; None when the precondition failed."""
        name = self.claim_name(obj)
        blob = self._client.bucket(obj.bucket).blob(name)
        blob.metadata = claim.listing_metadata()
        try:
            with self._translated(obj, "write"):
                blob.upload_from_string(
                    claim.to_bytes(),
                    content_type="application/json",
                    if_generation_match=if_generation_match,
                    timeout=_IO_TIMEOUT_S,
                    retry=_RETRY,
                )
        except _LostRace:
            return None
        assert blob.generation is not None
        return Lease(obj, name, int(blob.generation), claim)

    def _expiry(self) -> float:
        return self._clock() + self.lease_s

    @contextmanager
    def _translated(self, obj: StorageObject, verb: str) -> Iterator[None]:
        """412 means we lost a race (_LostRace); everything else goes through the one translator."""
        bucket, name = obj.bucket, self.claim_name(obj)
        fixes: dict[type[BaseException], str] = {
            gexc.Forbidden: f"grant the function's service account roles/storage.objectUser on bucket {bucket}",
            gexc.Unauthorized: "check the function's credentials (service account)",
            gexc.NotFound: f"bucket {bucket} does not exist or is not visible to the function",
        }
        with translate_google_errors(f"{verb} claim gs://{bucket}/{name}", fixes):
            try:
                yield
            except gexc.PreconditionFailed:
                raise _LostRace from None


class _LostRace(TransientError):
    """A generation precondition failed: someone else wrote the claim first (internal)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
