"""The request an inbox item runs: exactly one generation of a `gs://` object, or a local file.

The trigger names the object generation in REQUEST_URI (`gs://INBOX/name.json#generation`), so the
job reads the bytes that raised the event even if the object was overwritten since. Object names
may themselves contain `#` or `?`, so URIs are split here by hand, never by `urllib`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from job.errors import ConfigurationError, InputNotFound
from job.storage import Storages
from trigger.objects import InboxLayout


@dataclass(frozen=True)
class ItemSource:
    """One request document: `uri` is what result.json records as `source`."""

    uri: str
    bucket: str | None = None  # None: a local file, named by `name`
    name: str = ""
    generation: int | None = None

    @classmethod
    def parse(cls, uri: str) -> ItemSource:
        """From REQUEST_URI: gs://bucket/object#generation (generation optional) or a local path."""
        uri = uri.strip()
        if not uri.startswith("gs://"):
            if not uri:
                raise ConfigurationError("REQUEST_URI is empty: set it to gs://INBOX/name.json#generation or a path")
            return cls(uri=uri, name=uri)
        bucket, _, name = uri[len("gs://") :].partition("/")
        stem, sep, tail = name.rpartition("#")
        generation = int(tail) if sep and tail.isdigit() else None
        if generation is not None:
            name = stem
        if not bucket or not name:
            raise ConfigurationError(
                f"REQUEST_URI={uri!r} does not name an object; use gs://INBOX/name.json#generation"
            )
        return cls(uri=uri, bucket=bucket, name=name, generation=generation)

    @property
    def is_gcs(self) -> bool:
        return self.bucket is not None

    @property
    def object_uri(self) -> str:
        """The object without its generation (what a person types)."""
        return f"gs://{self.bucket}/{self.name}" if self.is_gcs else self.name

    def same_item(self, other: ItemSource) -> bool:
        """Same object and same generation: a result for `other` is a result for us."""
        return (self.bucket, self.name, self.generation) == (other.bucket, other.name, other.generation)

    def superseded_by(self, other: ItemSource) -> bool:
        """`other` is a newer generation of the same object."""
        return (
            self.is_gcs
            and (self.bucket, self.name) == (other.bucket, other.name)
            and self.generation is not None
            and other.generation is not None
            and other.generation > self.generation
        )

    def outbox_folder(self, layout: InboxLayout, stem: str | None = None) -> str:
        """Where this document's outputs go: for an object, its inbox drop's folder (docs/api.md
        section 7); for a local file, a folder beside it. `stem` names the folder instead of the
        document's own name less `.json` (a batch spec's folder is its id)."""
        if self.is_gcs:
            return layout.outbox_folder(
                self.name if stem is None else posixpath.join(posixpath.dirname(self.name), stem)
            )
        path = Path(self.name)
        if stem is None:
            stem = path.name.removesuffix(".json") if path.name.endswith(".json") else f"{path.name}.out"
        return f"{path.parent / stem}/"

    def default_outbox_uri(self, outbox_bucket: str) -> str:
        """`outbox_folder` without an outbox prefix: gs://OUTBOX/some/path/name/ (locally: name/)."""
        return self.outbox_folder(InboxLayout(outbox_bucket))

    def beside(self, ref: str) -> str | None:
        """The URI of `ref`, a path relative to this document's folder (absolute: as given, locally);
        None when it would leave the document's bucket."""
        if self.is_gcs:
            name = posixpath.normpath(posixpath.join(posixpath.dirname(self.name), ref.lstrip("/")))
            return None if name == ".." or name.startswith("../") else f"gs://{self.bucket}/{name}"
        path = Path(ref)
        return str(path if path.is_absolute() else Path(self.name).parent / path)


class Inbox:
    """Reads request documents and asks whether their object has moved on."""

    def __init__(self, storages: Storages) -> None:
        self.storages = storages

    def read(self, source: ItemSource) -> bytes:
        """The document's bytes; that exact generation when the URI names one."""
        try:
            return self.storages.read(source.object_uri, generation=source.generation)
        except InputNotFound:
            if source.generation is None:
                raise
        live = self.live_generation(source)
        what = "was deleted" if live is None else f"was overwritten (generation {live} is the current one)"
        raise InputNotFound(
            f"generation {source.generation} of {source.object_uri} is gone: the object {what} before this job "
            "read it. A newer generation runs as its own item; enable object versioning on the inbox bucket to "
            "keep every generation runnable"
        )

    def live_generation(self, source: ItemSource) -> int | None:
        """The object's current generation (None when it was deleted)."""
        return self.storages.generation(source.object_uri)
