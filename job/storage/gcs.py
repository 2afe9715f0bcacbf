"""The GCS store, the one google-cloud-storage client factory, and google's exceptions as ours.

Retries: an upload without a precondition is retried with WRITE_RETRY (the job's uploads are
idempotent: same name, same bytes; status.json is last-writer-wins anyway). A conditional upload is
retried only because it carries its generation precondition (google's own
DEFAULT_RETRY_IF_GENERATION_SPECIFIED rule, with WRITE_RETRY's backoff): at most one attempt can
apply. The price is that an attempt whose answer was lost, retried, fails its own precondition and
comes back as WriteConflict although it was written; every compare-and-swap caller re-reads on a
conflict and finds its own bytes there, so it converges instead of reporting a race that never was.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth.exceptions import DefaultCredentialsError

from job.errors import AccessDenied, ConfigurationError, InputNotFound, InvalidInput, StorageError
from job.storage import (
    GLOB_SYNTAX,
    OCTET_STREAM,
    Listed,
    TooLarge,
    Versioned,
    WriteConflict,
    glob_matcher,
    split_gs_uri,
)

if TYPE_CHECKING:
    from google.cloud import storage
    from google.cloud.storage.retry import ConditionalRetryPolicy

WRITE_RETRY = Retry(initial=0.5, maximum=8.0, multiplier=2.0, timeout=60.0)


@functools.cache
def _conditional_write_retry() -> ConditionalRetryPolicy:
    """WRITE_RETRY, applied only while the request carries a generation precondition (see above).

    Built on first use: google.cloud.storage is slow to import, and a local run never needs it.
    """
    from google.cloud.storage.retry import ConditionalRetryPolicy, is_generation_specified

    return ConditionalRetryPolicy(WRITE_RETRY, is_generation_specified, ["query_params"])


def gcs_client(project: str | None, *, endpoint: str | None = None) -> storage.Client:
    """The one way job/ builds a google-cloud-storage client, for `project` (GOOGLE_CLOUD_PROJECT).

    (job/devstack's emulator wrapper builds its own: it is the emulator's side, not a user of it.)

    STORAGE_EMULATOR_HOST is honoured by google-cloud-storage itself (that host, anonymous
    credentials), so a process pointed at fake-gcs-server needs nothing more. `endpoint` names an
    emulator explicitly, without the environment (the dev stack's, from its state file). Without
    credentials google-auth raises DefaultCredentialsError here; gcs_errors() words it.
    """
    from google.cloud import storage

    if endpoint is None:
        return storage.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return storage.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint),
    )


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


class GcsStore:
    """Objects in Google Cloud Storage (or the emulator named by STORAGE_EMULATOR_HOST)."""

    def __init__(self, project: str | None = None, *, client: storage.Client | None = None) -> None:
        self._project = project
        if client is not None:
            self.__dict__["client"] = client  # fills the cached_property

    @functools.cached_property
    def client(self) -> storage.Client:
        """Built on first use (inside a caller's gcs_errors), so a run that never touches gs:// needs no credentials."""
        return gcs_client(self._project)

    def read(
        self, uri: str, *, generation: int | None = None, max_bytes: int | None = None, timeout_s: float | None = None
    ) -> bytes:
        options: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        with gcs_errors(uri if generation is None else f"{uri}#{generation}"):
            blob = self._blob(uri, generation)
            try:
                # A ranged read (`end` is inclusive): at most one byte past the limit ever travels.
                data: bytes = blob.download_as_bytes(end=max_bytes, **options)
            except gexc.RequestRangeNotSatisfiable:
                return b""  # GCS answers a range on an empty object with 416
        if max_bytes is not None and len(data) > max_bytes:
            raise TooLarge(uri, max_bytes)
        return data

    def read_versioned(self, uri: str) -> Versioned | None:
        with gcs_errors(uri):
            blob = self._blob(uri)
            try:
                data: bytes = blob.download_as_bytes()
            except gexc.NotFound:
                return None
        return Versioned(data, int(blob.generation or 0))

    def generation(self, uri: str) -> int | None:
        with gcs_errors(uri):
            bucket, name = self._split(uri)
            blob = self.client.bucket(bucket).get_blob(name)
        return int(blob.generation) if blob is not None and blob.generation else None

    def write(
        self,
        uri: str,
        data: bytes,
        content_type: str = OCTET_STREAM,
        *,
        if_generation: int | None = None,
        cache_control: str | None = None,
    ) -> int:
        with gcs_errors(uri):
            blob = self._blob(uri)
            if cache_control:
                blob.cache_control = cache_control
            if if_generation is None:
                blob.upload_from_string(data, content_type=content_type, retry=WRITE_RETRY)
            else:
                try:
                    blob.upload_from_string(
                        data,
                        content_type=content_type,
                        if_generation_match=if_generation,
                        retry=_conditional_write_retry(),
                    )
                except gexc.PreconditionFailed:
                    raise WriteConflict(uri, if_generation) from None
        return int(blob.generation or 0)

    def list(self, prefix_uri: str, *, glob: str | None = None) -> Iterator[Listed]:
        bucket, prefix = split_gs_uri(prefix_uri)
        matches = glob_matcher(glob) if glob else None
        # The server filters too where it reads the pattern as we do (a literal prefix, a glob of
        # `*` and `?` only); names are checked here either way.
        plain = glob is not None and not set(prefix) & GLOB_SYNTAX and not set(glob) & (GLOB_SYNTAX - {"*", "?"})
        server_glob = prefix + glob if glob and plain else None
        with gcs_errors(prefix_uri):
            for blob in self.client.list_blobs(bucket, prefix=prefix or None, match_glob=server_glob):
                name = blob.name[len(prefix) :]
                if matches is None or matches(name):
                    yield Listed(f"gs://{bucket}/{blob.name}", name, int(blob.generation or 0), int(blob.size or 0))

    def download(
        self, uri: str, path: Path, *, generation: int | None = None, slice_bytes: int | None = None, workers: int = 1
    ) -> None:
        with gcs_errors(uri if generation is None else f"{uri}#{generation}"):
            blob = self._blob(uri, generation)
            if slice_bytes:
                from google.cloud.storage import transfer_manager

                transfer_manager.download_chunks_concurrently(
                    blob, str(path), chunk_size=slice_bytes, worker_type=transfer_manager.THREAD, max_workers=workers
                )
            else:
                blob.download_to_filename(str(path))

    def _split(self, uri: str) -> tuple[str, str]:
        bucket, name = split_gs_uri(uri)
        if not name:
            raise InvalidInput(f"{uri!r} names a bucket, not an object")
        return bucket, name

    def _blob(self, uri: str, generation: int | None = None) -> storage.Blob:
        bucket, name = self._split(uri)
        return self.client.bucket(bucket).blob(name, generation=generation)
