"""Which inbox object generations are pending: requests no one is running, found from two listings.

An object generation is *pending* when it is a request (`objects.why_ignored` says so) and its
claim is absent, released, or held under a lease that has expired. Claim objects carry their
state and lease in custom metadata (`Claim.listing_metadata`), so one listing of the inbox and one
of the claims prefix answer this without reading any claim:

    inbox listing (live generations, .json requests) ─┐
                                                      ├─> pending, oldest first
    claims listing (state, expires_at per generation) ┘

The job's draining tasks use this (`job/items/drain.py`) to find work, then take each item with
`ClaimStore.acquire`, which re-checks under a generation precondition: a stale listing can cost a
wasted try, never a second run. A claim listed without metadata (written by an older version) is
returned too; acquiring it reads the claim and settles the question.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

import google.cloud.storage as storage  # no py.typed: `from google.cloud import` confuses mypy
from google.api_core import exceptions as gexc

from .batches import is_batch_spec
from .claims import SETTLED, ClaimState
from .errors import translate_google_errors
from .objects import InboxLayout, StorageObject, why_ignored

# The `by` of a claim that a job task holds while it runs the item itself. The trigger leaves such
# an item alone while the lease is live (the task settles it `done`), and waits for nothing.
TASK_HOLDER = "task "


@dataclass(frozen=True)
class ListedClaim:
    """What a listing of the claims prefix says about one claim, without reading it."""

    state: ClaimState | None  # None: the claim carries no metadata; only reading it can tell
    expires_at: float

    def takeable(self, now: float) -> bool | None:
        """True: anyone may take it over; False: settled or held; None: unknown until read."""
        if self.state is None:
            return None
        if self.state in SETTLED:
            return False
        return self.state is ClaimState.RELEASED or self.expires_at <= now


def listed_claims(client: storage.Client, bucket: str, prefix: str) -> dict[tuple[str, int], ListedClaim]:
    """Every claim under `prefix` in `bucket`, keyed by (object name, generation)."""
    claims: dict[tuple[str, int], ListedClaim] = {}
    with _listing(bucket, prefix):
        for blob in client.list_blobs(bucket, prefix=prefix):
            name, _, generation = blob.name[len(prefix) :].rpartition("/")
            if not name or not generation.isdigit():
                continue  # not a claim: a stray object
            claims[(name, int(generation))] = _listed(blob.metadata or {})
    return claims


def pending_objects(client: storage.Client, bucket: str, layout: InboxLayout, *, now: float) -> list[StorageObject]:
    """The requests in `bucket` whose live generation no one is running, oldest first.

    Only live generations count: an overwritten generation is superseded by the newer one, which
    is pending in its place. Raises PermanentError when the configuration makes results look like
    requests (the outbox is the inbox bucket without OUTBOX_PREFIX), TransientError on a listing
    that failed and may work later.
    """
    claims = listed_claims(client, bucket, layout.claims_prefix)
    found: list[tuple[datetime | None, StorageObject]] = []
    with _listing(bucket, ""):
        for blob in client.list_blobs(bucket):
            obj = StorageObject(bucket, blob.name, int(blob.generation or 0), int(blob.size or 0))
            if not obj.generation or why_ignored(obj, layout) or is_batch_spec(obj):
                continue  # a batch spec runs as a batch (batches.py), never drained as one item
            listed = claims.get((obj.name, obj.generation))
            if listed is None or listed.takeable(now) is not False:
                found.append((blob.time_created, obj))
    found.sort(key=lambda pair: (pair[0] is None, pair[0] or datetime.min, pair[1].name))
    return [obj for _, obj in found]


def _listed(metadata: Mapping[str, str]) -> ListedClaim:
    try:
        return ListedClaim(ClaimState(metadata["state"]), float(metadata.get("expires_at", 0.0)))
    except (KeyError, ValueError):
        return ListedClaim(None, 0.0)


def _listing(bucket: str, prefix: str) -> AbstractContextManager[None]:
    """The one translator, with the fixes a listing of the inbox may need."""
    where = f"gs://{bucket}/{prefix}"
    return translate_google_errors(
        f"list {where}",
        {
            gexc.Forbidden: f"grant the job's service account roles/storage.objectViewer on bucket {bucket}",
            gexc.NotFound: f"bucket {bucket} does not exist: set INBOX_BUCKET to the inbox bucket",
        },
    )
