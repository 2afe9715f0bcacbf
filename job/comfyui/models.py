"""Models kept outside the image, copied in: `sync_models` and MODELS_URI.

`sync_models` copies every object under `MODELS_URI` (gs://bucket/prefix, or a local folder) into
`COMFYUI_DIR/models/<same relative path>`, many files at once and large files in parallel slices.
It pays a copy at each cold start, then ComfyUI reads from local disk at full speed. The other
way, a volume at MODELS_MOUNT mapped without copying, is job/comfyui/mount.py; docs/customization.md
compares the two.

Safe to call again: a file already present with the same size is skipped, and a file is only ever
visible complete (written to NAME.part, then renamed), so a crash mid-copy never leaves a truncated
model that ComfyUI would try to load.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from job.errors import ConfigurationError, RequestError, StorageError
from job.storage import gcs_errors, split_gs_uri

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

# Above this size a GCS object is fetched in parallel ranged slices rather than one stream.
SLICED_DOWNLOAD_BYTES = 256 * 1024 * 1024
SLICE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class SyncReport:
    """What `sync_models` did: files found at the source, copied, skipped, and bytes copied."""

    source: str
    files: int
    copied: int
    skipped: int
    bytes_copied: int
    seconds: float


@dataclass(frozen=True)
class _Item:
    relative: PurePosixPath
    size: int
    fetch: Callable[[Path], None]  # writes the whole file to the given path


def sync_models(
    uri: str,
    comfyui_dir: Path,
    workers: int = 16,
    *,
    client: storage.Client | None = None,
    sliced_download_bytes: int = SLICED_DOWNLOAD_BYTES,
) -> SyncReport:
    """Copy every model under `uri` into `comfyui_dir/models`, `workers` files at a time.

    `uri` is gs://bucket[/prefix] or a local folder (a mounted disk, a test fixture). Object
    `prefix/checkpoints/x.safetensors` becomes `models/checkpoints/x.safetensors`. `client` is a
    google-cloud-storage client (one from the environment when None). Raises ConfigurationError
    when the source does not exist or cannot be read, StorageError when a copy fails.
    """
    if workers < 1:
        raise ConfigurationError(f"MODELS_DOWNLOAD_WORKERS must be at least 1, not {workers}")
    started = time.monotonic()
    destination = Path(comfyui_dir) / "models"
    if uri.startswith("gs://"):
        items = list(_gcs_items(uri, client, sliced_download_bytes, workers))
    else:
        items = list(_local_items(uri))

    todo = [item for item in items if not _present(destination / item.relative, item.size)]
    if todo:
        _copy_all(uri, todo, destination, workers)
    report = SyncReport(
        source=uri,
        files=len(items),
        copied=len(todo),
        skipped=len(items) - len(todo),
        bytes_copied=sum(item.size for item in todo),
        seconds=time.monotonic() - started,
    )
    log.info(
        "models from %s: %d file(s), %d copied (%.1f MiB), %d already present, in %.1f s",
        uri, report.files, report.copied, report.bytes_copied / 2**20, report.skipped, report.seconds,
    )  # fmt: skip
    return report


# ----------------------------------------------------------------------------------- sources --


def _gcs_items(uri: str, client: storage.Client | None, sliced_bytes: int, workers: int) -> Iterator[_Item]:
    with _source_errors(uri):
        bucket_name, prefix = split_gs_uri(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if client is None:
        from google.cloud import storage

        client = storage.Client()
    with _source_errors(uri):
        blobs = list(client.list_blobs(bucket_name, prefix=prefix or None))
    for blob in blobs:
        relative = _safe_relative(blob.name[len(prefix) :])
        if relative is None:
            if not blob.name.endswith("/"):  # folder placeholders are expected; anything else is odd
                log.warning("skipping %s: its name leaves the models folder", blob.name)
            continue
        yield _Item(relative, int(blob.size or 0), _gcs_fetch(uri, blob, sliced_bytes, workers))


def _gcs_fetch(uri: str, blob: storage.Blob, sliced_bytes: int, workers: int) -> Callable[[Path], None]:
    object_uri = f"gs://{blob.bucket.name}/{blob.name}"

    def fetch(path: Path) -> None:
        from google.cloud.storage import transfer_manager

        with _source_errors(uri, object_uri):
            if (blob.size or 0) >= sliced_bytes:
                transfer_manager.download_chunks_concurrently(
                    blob, str(path), chunk_size=SLICE_BYTES, worker_type=transfer_manager.THREAD, max_workers=workers
                )
            else:
                blob.download_to_filename(str(path))

    return fetch


def _local_items(uri: str) -> Iterator[_Item]:
    root = Path(uri.removeprefix("file://"))
    if not root.is_dir():
        raise ConfigurationError(f"MODELS_URI={uri} must be gs://bucket/prefix or an existing folder")
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(".part"):
            relative = PurePosixPath(path.relative_to(root).as_posix())

            def fetch(target: Path, source: Path = path) -> None:
                shutil.copyfile(source, target)

            yield _Item(relative, path.stat().st_size, fetch)


# ------------------------------------------------------------------------------------ copying --


def _copy_all(uri: str, items: list[_Item], destination: Path, workers: int) -> None:
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="models") as pool:
        futures = [pool.submit(_copy_one, item, destination) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            error = future.exception()
            if error is not None:
                if isinstance(error, ConfigurationError | StorageError):
                    raise error
                raise StorageError(f"copying models from {uri} failed: {error}") from error


def _copy_one(item: _Item, destination: Path) -> None:
    target = destination / item.relative
    partial = target.with_name(f".{target.name}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        item.fetch(partial)
        size = partial.stat().st_size
        if size != item.size:
            raise StorageError(f"{item.relative}: got {size} bytes, expected {item.size}")
        partial.replace(target)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def _present(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _safe_relative(name: str) -> PurePosixPath | None:
    """The object's path under the models folder, or None when it is empty or would escape it."""
    relative = PurePosixPath(name)
    if not name or name.endswith("/") or relative.is_absolute() or ".." in relative.parts:
        return None
    return relative


@contextmanager
def _source_errors(uri: str, object_uri: str | None = None) -> Iterator[None]:
    """GCS failures as ours; a missing or forbidden source is a configuration problem, not a request's."""
    try:
        with gcs_errors(object_uri or uri):
            yield
    except RequestError as exc:
        raise ConfigurationError(f"MODELS_URI={uri}: {exc.message}") from None
