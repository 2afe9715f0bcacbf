"""One generation of one inbox object, and where everything that belongs to it lives.

    gs://INBOX/<name>.json#<generation>              the request: REQUEST_URI, result.json's `source`
    gs://OUTBOX/<OUTBOX_PREFIX><name>/                its outbox folder (docs/api.md section 7)
    gs://INBOX/<CLAIMS_PREFIX><name>/<generation>     its claim (claims.py)

The trigger and the job both derive these from an `InboxLayout`, so the rules (a folder ends in
`/`, an outbox folder is the object's name less `.json`) are written here once. The job imports
this module; this module imports nothing of the job (the function is deployed alone).

Names come from the event, so they are checked before any call (`name_problem`): GCS's own naming
rules (https://cloud.google.com/storage/docs/buckets#naming, /docs/objects#naming), which no real
object breaks, so a name that breaks them is a forged or corrupt event; and one rule of ours: no
`..` path segment, since the claim and the outbox folder are paths built from the name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import PermanentError

DEFAULT_MAX_REQUEST_BYTES = 50 * 1024 * 1024
MAX_OBJECT_NAME_BYTES = 1024  # GCS: 1-1024 bytes of UTF-8

_BUCKET_CHARS = re.compile(r"[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?")  # ASCII only, letter or digit at both ends
_DOTTED_QUAD = re.compile(r"[0-9]+(?:\.[0-9]+){3}")
_ACME = ".well-known/acme-challenge/"


def folder_prefix(prefix: str) -> str:
    """A prefix as every part of this project writes one: no leading '/', a trailing one unless empty."""
    prefix = prefix.strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


@dataclass(frozen=True)
class InboxLayout:
    """Where an inbox's results and claims go (OUTBOX_BUCKET, OUTBOX_PREFIX, CLAIMS_PREFIX), and which
    of its objects are requests (MAX_REQUEST_BYTES). Prefixes are stored as folders (`folder_prefix`)."""

    outbox_bucket: str = "outbox"
    outbox_prefix: str = ""
    claims_prefix: str = "_claims/"
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "outbox_prefix", folder_prefix(self.outbox_prefix))
        object.__setattr__(self, "claims_prefix", folder_prefix(self.claims_prefix))

    def outbox_path(self, name: str) -> str:
        """The outbox folder of the inbox object `name`, inside the outbox bucket: <OUTBOX_PREFIX><name less .json>/."""
        return f"{self.outbox_prefix}{name.removesuffix('.json')}/"

    def outbox_folder(self, name: str) -> str:
        """The outbox folder of the inbox object `name`: gs://OUTBOX/<OUTBOX_PREFIX><name less .json>/."""
        return f"gs://{self.outbox_bucket}/{self.outbox_path(name)}"


@dataclass(frozen=True)
class StorageObject:
    """One generation of one inbox object."""

    bucket: str
    name: str
    generation: int
    size: int | None = None

    @property
    def uri(self) -> str:
        """`gs://bucket/name#generation`: the job's REQUEST_URI and the result's `source`."""
        return f"gs://{self.bucket}/{self.name}#{self.generation}"

    def outbox_uri(self, layout: InboxLayout) -> str:
        """Where the job writes this object's outputs."""
        return layout.outbox_folder(self.name)


def bucket_name_problem(bucket: str) -> str | None:
    """What breaks GCS's bucket naming rules in `bucket` (None when nothing does)."""
    limit = 222 if "." in bucket else 63
    if not 3 <= len(bucket) <= limit:
        return f"is {len(bucket)} characters; GCS bucket names have 3 to 63 (222 with dots)"
    if not _BUCKET_CHARS.fullmatch(bucket):
        return "holds characters other than a-z, 0-9, '-', '_' and '.', or does not start and end in a letter or digit"
    if ".." in bucket:
        return "holds '..'"
    if any(len(part) > 63 for part in bucket.split(".")):
        return "has a dot-separated part over 63 characters"
    if _DOTTED_QUAD.fullmatch(bucket):
        return "is an IP address"
    if bucket.startswith("goog") or "google" in bucket:
        return "starts with 'goog' or holds 'google', which GCS reserves"
    return None


def object_name_problem(name: str) -> str | None:
    """What breaks GCS's object naming rules, or ours (no `..` segment), in `name` (None when nothing does)."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    if not 1 <= size <= MAX_OBJECT_NAME_BYTES:
        return f"is {size} bytes of UTF-8; GCS object names have 1 to {MAX_OBJECT_NAME_BYTES}"
    if any(char in name for char in "\r\n\0"):
        return "holds a carriage return, line feed or NUL"
    if name in (".", ".."):
        return "is '.' or '..'"
    if name.startswith(_ACME):
        return f"starts with {_ACME!r}, which GCS reserves"
    if ".." in name.split("/"):
        return "has a '..' path segment; its claim and outbox folder are paths built from the name"
    return None


def name_problem(bucket: str, name: str) -> str | None:
    """Why `gs://bucket/name` cannot be an inbox object (None when it can), with the offending name shown."""
    if problem := bucket_name_problem(bucket):
        return f"bucket {_shown(bucket)} {problem}"
    if problem := object_name_problem(name):
        return f"object name {_shown(name)} {problem}; rename the object to run it"
    return None


def _shown(text: str, limit: int = 120) -> str:
    """A name as a log line may quote it: repr (control characters escaped), cut to `limit`."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


def why_ignored(obj: StorageObject, layout: InboxLayout) -> str | None:
    """Why this object is not a request (None when it is one): the log line says what to do."""
    if problem := name_problem(obj.bucket, obj.name):  # a listing (pending.py) meets real names only
        return problem
    if obj.name.startswith(layout.claims_prefix):
        return f"under the claims prefix {layout.claims_prefix!r} (the trigger's own bookkeeping)"
    if obj.bucket == layout.outbox_bucket and obj.name.startswith(layout.outbox_prefix):
        if not layout.outbox_prefix:
            raise PermanentError(
                f"OUTBOX_BUCKET={obj.bucket!r} is the inbox bucket and OUTBOX_PREFIX is empty, so every "
                "result would look like a request; set OUTBOX_PREFIX (e.g. outbox/) or use another bucket"
            )
        return f"under the outbox prefix {layout.outbox_prefix!r} (a result, not a request)"
    if not obj.name.endswith(".json"):
        return "not a .json object; drop workflow requests as <name>.json"
    if obj.size is not None and obj.size > layout.max_request_bytes:
        return (
            f"{obj.size} bytes is over MAX_REQUEST_BYTES={layout.max_request_bytes}; pass large inputs by "
            "reference in `inputs` (gs:// or https:// URIs) instead of inline base64, or raise MAX_REQUEST_BYTES"
        )
    return None
