"""Files on disk with the GCS store's semantics, for the CLI, local runs and local batches.

    write NAME:  bytes ──> .NAME.<random>.partial ──flock(folder)──> NAME still at if_generation?
                                                           no ──> WriteConflict (partial removed)
                                                           yes ─> stamp the partial's mtime ──> rename over NAME

A file's generation is its nanosecond mtime, which every write stamps above the generation it
replaces (so two writes in one clock tick still differ; on a filesystem with coarse timestamps it
steps further). The check and the rename happen under an exclusive flock on the folder itself, so
of two processes or threads racing a compare-and-swap exactly one wins, and no lock file is left
beside the outputs. A reader opens the file and reads the generation from that open file: a rename
never changes the bytes behind an open handle, so the generation is always that of the bytes read.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlparse

from job.errors import InputNotFound, StorageError
from job.storage import OCTET_STREAM, Listed, TooLarge, Versioned, WriteConflict, glob_matcher

PARTIAL = ".partial"
_COPY_CHUNK = 8 * 1024 * 1024
_STAMP_STEPS_NS = (0, 1_000, 1_000_000, 1_000_000_000, 2_000_000_000)  # for coarser and coarser mtimes


class LocalStore:
    """Files on this machine: a plain path, or a `file://` URI."""

    @staticmethod
    def path(uri: str) -> Path:
        return Path(_path_text(uri))

    def read(
        self, uri: str, *, generation: int | None = None, max_bytes: int | None = None, timeout_s: float | None = None
    ) -> bytes:
        with self._open(uri, generation) as handle:
            try:
                data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
            except OSError as exc:
                raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise TooLarge(uri, max_bytes)
        return data

    def read_versioned(self, uri: str) -> Versioned | None:
        try:
            with self._open(uri, None) as handle:
                return Versioned(handle.read(), _generation(os.fstat(handle.fileno())))
        except InputNotFound:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc

    def generation(self, uri: str) -> int | None:
        try:
            return _generation(self.path(uri).stat())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc

    def write(
        self,
        uri: str,
        data: bytes,
        content_type: str = OCTET_STREAM,
        *,
        if_generation: int | None = None,
        cache_control: str | None = None,
    ) -> int:
        path = self.path(uri)
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with partial.open("xb") as handle:
                    handle.write(data)
                with _folder_lock(path.parent):
                    current = _generation_at(path)
                    if if_generation is not None and if_generation != current:
                        raise WriteConflict(uri, if_generation)
                    generation = _stamp(partial, above=current)
                    partial.replace(path)  # a reader never sees half a file
            finally:
                partial.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {exc.strerror}") from exc
        return generation

    def list(self, prefix_uri: str, *, glob: str | None = None) -> Iterator[Listed]:
        head, sep, stem = _path_text(prefix_uri).rpartition("/")
        folder = Path(head or ("/" if sep else "."))
        if not folder.is_dir():
            raise InputNotFound(f"{prefix_uri} does not exist: {folder} is not a folder")
        depth = None if glob is None or "**" in glob else glob.count("/")
        matches = glob_matcher(glob) if glob else None
        found = sorted(_walk(folder, "", stem, depth), key=lambda entry: entry[0])
        for name, stat in found:
            if matches is None or matches(name):
                yield Listed(prefix_uri + name, name, _generation(stat), stat.st_size)

    def download(
        self, uri: str, path: Path, *, generation: int | None = None, slice_bytes: int | None = None, workers: int = 1
    ) -> None:
        with self._open(uri, generation) as source:
            try:
                with path.open("wb") as target:
                    shutil.copyfileobj(source, target, _COPY_CHUNK)
            except OSError as exc:
                raise StorageError(f"cannot copy {uri} to {path}: {exc.strerror}") from exc

    def _open(self, uri: str, generation: int | None) -> IO[bytes]:
        """The file open for reading, checked to be at `generation` when one is named."""
        try:
            handle = self.path(uri).open("rb")
        except FileNotFoundError:
            raise InputNotFound(f"{uri} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc
        if generation is not None and _generation(os.fstat(handle.fileno())) != generation:
            handle.close()
            raise InputNotFound(f"{uri}#{generation} does not exist: the file was replaced since")
        return handle


def _path_text(uri: str) -> str:
    """The path a URI names, its trailing '/' kept (a listing's prefix needs it)."""
    return unquote(urlparse(uri).path) if uri.startswith("file://") else uri


def _generation(stat: os.stat_result) -> int:
    return max(stat.st_mtime_ns, 1)  # 0 means "absent" to a conditional write


def _generation_at(path: Path) -> int:
    try:
        return _generation(path.stat())
    except FileNotFoundError:
        return 0


def _stamp(partial: Path, *, above: int) -> int:
    """Give the partial file an mtime above `above` and return it: the generation it will have."""
    wanted = max(time.time_ns(), above + 1)
    for step in _STAMP_STEPS_NS:
        os.utime(partial, ns=(wanted + step, wanted + step))
        stamped = _generation(partial.stat())
        if stamped > above:
            return stamped
    raise StorageError(f"cannot give {partial} a newer modification time than {above} ns")


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock on the folder: serialises the check-and-rename of writes into it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _walk(folder: Path, rel: str, stem: str, depth: int | None) -> Iterator[tuple[str, os.stat_result]]:
    """(name after `stem`, stat) of each file under `folder` whose path from it starts with `stem`.

    Folders that cannot hold a match are not entered: ones off the stem, and with `depth`, ones
    deeper than a name with that many '/' could reach.
    """
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return  # removed while we looked
    except OSError as exc:
        raise StorageError(f"cannot list {folder}: {exc.strerror}") from exc
    for entry in entries:
        child = rel + entry.name
        if entry.is_dir():
            sub = child + "/"
            if stem.startswith(sub) or (
                sub.startswith(stem) and (depth is None or sub[len(stem) :].count("/") <= depth)
            ):
                yield from _walk(Path(entry.path), sub, stem, depth)
        elif entry.is_file() and child.startswith(stem) and not _is_partial(entry.name):
            yield child[len(stem) :], entry.stat()


def _is_partial(name: str) -> bool:
    """A write in progress (or one a killed process left): never an object."""
    return name.startswith(".") and name.endswith(PARTIAL)
