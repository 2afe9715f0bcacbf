"""Storage behind one seam, chosen by URI: `gs://bucket/name` (job.storage.gcs) or a local path,
`file://` too (job.storage.local).

Everything the job, the service and the CLI keep in buckets goes through a `Store`: outputs and
status.json, result.json and a batch's summary.json (replaced by compare-and-swap), the inbox
document of one named generation, `gs://` inputs (a bounded read), a batch's item folders and a
model folder (listings), model files (copied to disk in parallel slices). `Storages` picks the
backend by scheme and is itself a Store, so callers never ask which one they have:

    caller ──> Storages ──gs://──> GcsStore    one google-cloud-storage client, from gcs_client()
                        └─other──> LocalStore  files on disk, the same semantics

A generation is what compare-and-swap compares: GCS's object generation, on disk the file's
nanosecond mtime, forced to grow on every write. `write(..., if_generation=g)` writes only while the
object is still at `g` (0: only while it is absent) and raises WriteConflict otherwise: a storage
exception, not a WorkerError, because it is control flow for the caller's loop (re-read, decide,
try again), never an error to report. TooLarge is the same for `read(..., max_bytes=n)`: the
caller words the limit for its own caller.

Not everything that speaks GCS can come here: the Cloud Function (trigger/) is deployed alone
from its folder and must not import job/ (a guard test checks that), so its claims
(trigger/claims.py) keep their own generation-matched writes, and a draining task hands them the
raw client from `Storages.gcs_client`. google-cloud-storage's exceptions become ours in
`job.storage.gcs.gcs_errors()` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from job.errors import InvalidInput

if TYPE_CHECKING:
    from google.cloud import storage

    from job.storage.gcs import GcsStore
    from job.storage.local import LocalStore

OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the generation they are (what a later conditional write names)."""

    data: bytes
    generation: int


@dataclass(frozen=True)
class Listed:
    """One object under a listed prefix: `name` is the rest of its URI after the prefix."""

    uri: str
    name: str
    generation: int
    size: int


class WriteConflict(Exception):
    """A conditional write found the object at another generation than `expected` (0: absent)."""

    def __init__(self, uri: str, expected: int) -> None:
        what = "absent" if expected == 0 else f"at generation {expected}"
        super().__init__(f"{uri} is no longer {what}; read it again")
        self.uri = uri
        self.expected = expected


class TooLarge(Exception):
    """A bounded read found more than `limit` bytes (no more than one byte past it was read)."""

    def __init__(self, uri: str, limit: int) -> None:
        super().__init__(f"{uri} is larger than {limit} bytes")
        self.uri = uri
        self.limit = limit


class Store(Protocol):
    """What every backend does, with the same meaning on each (tests/storage/test_store.py)."""

    def read(
        self, uri: str, *, generation: int | None = None, max_bytes: int | None = None, timeout_s: float | None = None
    ) -> bytes:
        """The object's bytes; of exactly `generation` when given.

        InputNotFound when it is absent, or that generation is gone. With `max_bytes`, TooLarge
        when it holds more (and at most one byte more ever travels). `timeout_s` bounds a network read.
        """
        ...

    def read_versioned(self, uri: str) -> Versioned | None:
        """The bytes with their generation; None when the object is absent."""
        ...

    def generation(self, uri: str) -> int | None:
        """The live generation; None when the object is absent."""
        ...

    def write(
        self,
        uri: str,
        data: bytes,
        content_type: str = OCTET_STREAM,
        *,
        if_generation: int | None = None,
        cache_control: str | None = None,
    ) -> int:
        """Replace the object whole (a reader sees the old bytes or the new, never half); returns the new generation.

        `if_generation`: only while the object is at that generation (0: only while absent), else
        WriteConflict and nothing written. A conflict can be this very write, retried after its
        answer was lost: callers re-read and decide, they never assume another writer won.
        """
        ...

    def list(self, prefix_uri: str, *, glob: str | None = None) -> Iterator[Listed]:
        """Every object whose URI starts with `prefix_uri` (a folder `.../` or a partial name), by name.

        `glob` keeps only names (after the prefix) that match it: `*` and `?` stay inside one
        folder, `**` crosses folders (GCS `match_glob`, evaluated by the server where it can be).
        InputNotFound when what holds the prefix is missing: the bucket, or on disk the folder
        (which, unlike a GCS prefix, exists on its own).
        """
        ...

    def download(
        self, uri: str, path: Path, *, generation: int | None = None, slice_bytes: int | None = None, workers: int = 1
    ) -> None:
        """Copy the object into the file `path` without holding it in memory.

        `slice_bytes`: fetch it in ranged slices of that size, `workers` at a time (GCS; on disk a copy).
        """
        ...


def split_gs_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'object/name') from gs://bucket/object/name, or InvalidInput."""
    # Split by hand: object names may hold '#' and '?', which a URL parser would cut off.
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket:
        raise InvalidInput(f"{uri!r} is not a gs://bucket/object URI")
    return bucket, name


def as_folder(uri: str) -> str:
    """`uri` as a folder others are joined to: ending in '/' ('' stays '': the root).

    InvalidInput for a gs:// URI that names no bucket.
    """
    if uri.startswith("gs://"):
        split_gs_uri(uri)
    return uri if not uri or uri.endswith("/") else uri + "/"


def glob_matcher(glob: str) -> Callable[[str], bool]:
    """`glob` as a test on names: `**` any characters, `*` any but '/', `?` one but '/'; the rest literal."""
    parts = re.split(r"(\*\*|\*|\?)", glob)
    regex = "".join({"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part)) for part in parts)
    compiled = re.compile(regex, re.DOTALL)
    return lambda name: compiled.fullmatch(name) is not None


GLOB_SYNTAX = frozenset("*?[]{}\\")  # what GCS's match_glob reads as syntax


class Storages:
    """The Store for any URI: `gs://` to GCS, anything else to disk. One GCS client serves every call.

    `client`: a google-cloud-storage client to use instead of gcs_client(project) (tests hand in the emulator's).
    """

    def __init__(self, project: str | None = None, *, client: storage.Client | None = None) -> None:
        # Imported here: both backends build on the types above.
        from job.storage.gcs import GcsStore
        from job.storage.local import LocalStore

        self._gcs: GcsStore = GcsStore(project, client=client)
        self._local: LocalStore = LocalStore()

    @property
    def gcs_client(self) -> storage.Client:
        """The google-cloud-storage client behind every gs:// call, for code that cannot come through
        this seam: trigger's ClaimStore and pending listing, which the Cloud Function shares (job.items.drain)."""
        return self._gcs.client

    def _for(self, uri: str) -> Store:
        return self._gcs if uri.startswith("gs://") else self._local

    def read(
        self, uri: str, *, generation: int | None = None, max_bytes: int | None = None, timeout_s: float | None = None
    ) -> bytes:
        return self._for(uri).read(uri, generation=generation, max_bytes=max_bytes, timeout_s=timeout_s)

    def read_versioned(self, uri: str) -> Versioned | None:
        return self._for(uri).read_versioned(uri)

    def generation(self, uri: str) -> int | None:
        return self._for(uri).generation(uri)

    def write(
        self,
        uri: str,
        data: bytes,
        content_type: str = OCTET_STREAM,
        *,
        if_generation: int | None = None,
        cache_control: str | None = None,
    ) -> int:
        return self._for(uri).write(uri, data, content_type, if_generation=if_generation, cache_control=cache_control)

    def list(self, prefix_uri: str, *, glob: str | None = None) -> Iterator[Listed]:
        return self._for(prefix_uri).list(prefix_uri, glob=glob)

    def download(
        self, uri: str, path: Path, *, generation: int | None = None, slice_bytes: int | None = None, workers: int = 1
    ) -> None:
        self._for(uri).download(uri, path, generation=generation, slice_bytes=slice_bytes, workers=workers)
