"""Storage behind two methods, chosen by URI: `gs://bucket/name` or a local path (`file://` too).

The job's outbox, the service's `output.return: "uri"`, `gs://` inputs and the CLI all read and
write through here. google-cloud-storage's exceptions become ours in `gcs_errors()` only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlparse

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth.exceptions import DefaultCredentialsError

from job.errors import AccessDenied, ConfigurationError, InputNotFound, InvalidInput, StorageError

if TYPE_CHECKING:
    from google.cloud import storage

# Uploads of outputs are idempotent (same name, same bytes), so retrying them is safe.
WRITE_RETRY = Retry(initial=0.5, maximum=8.0, multiplier=2.0, timeout=60.0)


class Storage(Protocol):
    def read(self, uri: str) -> bytes: ...

    def write(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...


def split_gs_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'object/name') from gs://bucket/object/name, or InvalidInput."""
    # Split by hand: object names may hold '#' and '?', which a URL parser would cut off.
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket:
        raise InvalidInput(f"{uri!r} is not a gs://bucket/object URI")
    return bucket, name


@contextmanager
def gcs_errors(uri: str) -> Iterator[None]:
    """google-api-core exceptions as ours: missing and forbidden are the caller's, the rest retryable."""
    try:
        yield
    except gexc.NotFound:
        raise InputNotFound(f"{uri} does not exist") from None
    except gexc.Forbidden as exc:
        raise AccessDenied(
            f"access to {uri} was refused ({exc.message}); grant the service account an object role on the bucket"
        ) from None
    except DefaultCredentialsError as exc:
        raise ConfigurationError(
            f"no Google credentials to reach {uri}: run `gcloud auth application-default login`, "
            "or set STORAGE_EMULATOR_HOST for a local emulator"
        ) from exc
    except (gexc.GoogleAPIError, OSError) as exc:
        raise StorageError(f"storage failed for {uri}: {exc}") from exc


class GcsStorage:
    """Objects in Google Cloud Storage (or the emulator named by STORAGE_EMULATOR_HOST)."""

    def __init__(self, project: str | None = None) -> None:
        self._project = project

    @functools.cached_property
    def client(self) -> storage.Client:
        from google.cloud import storage

        return storage.Client(project=self._project)

    def blob(self, uri: str) -> storage.Blob:
        bucket, name = split_gs_uri(uri)
        if not name:
            raise InvalidInput(f"{uri!r} names a bucket, not an object")
        return self.client.bucket(bucket).blob(name)

    def read(self, uri: str) -> bytes:
        with gcs_errors(uri):
            data: bytes = self.blob(uri).download_as_bytes()
            return data

    def write(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with gcs_errors(uri):
            self.blob(uri).upload_from_string(data, content_type=content_type, retry=WRITE_RETRY)


class LocalStorage:
    """Files on this machine, for the CLI and local runs."""

    @staticmethod
    def path(uri: str) -> Path:
        return Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)

    def read(self, uri: str) -> bytes:
        try:
            return self.path(uri).read_bytes()
        except FileNotFoundError:
            raise InputNotFound(f"{uri} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc

    def write(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self.path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            partial.write_bytes(data)
            partial.replace(path)  # a reader never sees half a file
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {exc.strerror}") from exc


class Storages:
    """Picks the storage for a URI; one GCS client is shared by every gs:// call."""

    def __init__(self, project: str | None = None) -> None:
        self.gcs = GcsStorage(project)
        self.local = LocalStorage()

    def for_uri(self, uri: str) -> Storage:
        return self.gcs if uri.startswith("gs://") else self.local

    def read(self, uri: str) -> bytes:
        return self.for_uri(uri).read(uri)

    def write(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.for_uri(uri).write(uri, data, content_type)
