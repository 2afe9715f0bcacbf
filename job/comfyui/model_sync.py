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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from job.errors import ConfigurationError, InputNotFound, RequestError, StorageError
from job.storage import Storages, as_folder

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
    uri: str
    generation: int  # as listed: the copy is of exactly these bytes


def sync_models(
    uri: str,
    comfyui_dir: Path,
    workers: int = 16,
    *,
    project: str | None = None,
    client: storage.Client | None = None,
    sliced_download_bytes: int = SLICED_DOWNLOAD_BYTES,
) -> SyncReport:
    """Copy every model under `uri` into `comfyui_dir/models`, `workers` files at a time.

    `uri` is gs://bucket[/prefix] or a local folder (a mounted disk, a test fixture). Object
    `prefix/checkpoints/x.safetensors` becomes `models/checkpoints/x.safetensors`. `project` is
    GOOGLE_CLOUD_PROJECT; `client` a google-cloud-storage client to use instead of one from the
    environment (tests: the emulator's). Raises ConfigurationError when the source does not exist
    or cannot be read, StorageError when a copy fails.
    """
    if workers < 1:
        raise ConfigurationError(f"MODELS_DOWNLOAD_WORKERS must be at least 1, not {workers}")
    started = time.monotonic()
    destination = Path(comfyui_dir) / "models"
    storages = Storages(project, client=client)
    items = _items(storages, uri)

    todo = [item for item in items if not _present(destination / item.relative, item.size)]
    if todo:
        _copy_all(storages, uri, todo, destination, workers, sliced_download_bytes)
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


def _items(storages: Storages, uri: str) -> list[_Item]:
    """Every model file under the source folder (a bucket's prefix or a folder on disk)."""
    items = []
    with _source_errors(uri):
        for listed in storages.list(as_folder(uri)):
            relative = _safe_relative(listed.name)
            if relative is None:
                if not listed.name.endswith("/"):  # folder placeholders are expected; anything else is odd
                    log.warning("skipping %s: its name leaves the models folder", listed.uri)
                continue
            if relative.name.endswith(".part"):
                continue  # a copy a crash left behind (ours, when the source was once a destination)
            items.append(_Item(relative, listed.size, listed.uri, listed.generation))
    return items


# ------------------------------------------------------------------------------------ copying --


def _copy_all(
    storages: Storages, uri: str, items: list[_Item], destination: Path, workers: int, sliced_bytes: int
) -> None:
    def download(item: _Item, path: Path) -> None:
        slices = SLICE_BYTES if item.size >= sliced_bytes else None  # big ones: parallel ranged slices
        with _source_errors(uri):
            storages.download(item.uri, path, generation=item.generation, slice_bytes=slices, workers=workers)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="models") as pool:
        futures = [pool.submit(_copy_one, item, destination, download) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            error = future.exception()
            if error is not None:
                if isinstance(error, ConfigurationError | StorageError):
                    raise error
                raise StorageError(f"copying models from {uri} failed: {error}") from error


def _copy_one(item: _Item, destination: Path, download: Callable[[_Item, Path], None]) -> None:
    target = destination / item.relative
    partial = target.with_name(f".{target.name}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        download(item, partial)
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
def _source_errors(uri: str) -> Iterator[None]:
    """A missing or forbidden source is a configuration problem, not a request's."""
    try:
        yield
    except RequestError as exc:
        hint = "; give gs://bucket/prefix or an existing folder" if isinstance(exc, InputNotFound) else ""
        raise ConfigurationError(f"MODELS_URI={uri}: {exc.message}{hint}") from None
