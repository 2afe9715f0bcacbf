"""Where a ComfyUI we started keeps its files, read from the command line we started it with.

A managed ComfyUI shares our disk, so the runner reads finished outputs straight from its
output and temp folders instead of asking /view: one HTTP hop less per file, and no wait while
ComfyUI's server is held by its post-prompt garbage collection. The rules mirror ComfyUI 0.3.x's
main.py and folder_paths.py; a file not found where they point is fetched over /view instead.

The same disk is why a run cleans up after itself: its inputs' folder under input/ and the files it
produced are removed once read (`remove_tree`, `remove_file`). On Cloud Run that disk is memory.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def output_folders(comfyui_dir: Path, argv: list[str]) -> dict[str, Path]:
    """{"output": dir, "temp": dir} for a ComfyUI in `comfyui_dir` started with `argv` (last flag wins)."""
    args, absolute = _parse(comfyui_dir, argv)
    base = absolute(args.base_directory or ".")
    return {
        "output": absolute(args.output_directory) if args.output_directory else base / "output",
        # ComfyUI appends "temp" to --temp-directory, unlike --output-directory.
        "temp": absolute(args.temp_directory) / "temp" if args.temp_directory else base / "temp",
    }


def input_folder(comfyui_dir: Path, argv: list[str]) -> Path:
    """ComfyUI's input folder (where /upload/image writes) for the same command line."""
    args, absolute = _parse(comfyui_dir, argv)
    return absolute(args.input_directory) if args.input_directory else absolute(args.base_directory or ".") / "input"


def _parse(comfyui_dir: Path, argv: list[str]) -> tuple[argparse.Namespace, Callable[[str], Path]]:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--base-directory", "--output-directory", "--temp-directory", "--input-directory"):
        parser.add_argument(flag)
    args, _ = parser.parse_known_args(argv)

    def absolute(path: str) -> Path:  # ComfyUI runs in its own folder: relative paths start there
        return (comfyui_dir / path).resolve()

    return args, absolute


def local_path(folders: dict[str, Path], folder_type: str, subfolder: str, filename: str) -> Path | None:
    """The file ComfyUI reported, if it is a regular file inside the folder its type names."""
    root = folders.get(folder_type)
    if root is None:
        return None
    path = (root / subfolder / filename).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def remove_file(root: Path, path: Path) -> None:
    """Delete `path` (a file under `root`) and the folders it leaves empty, up to `root` itself.

    A file already gone is no error: ComfyUI or another cleanup may have been first.
    """
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    folder = path.parent
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()  # only while empty: a concurrent run's files in the same subfolder stay
        except OSError:
            return
        folder = folder.parent


def remove_tree(root: Path, relative: str) -> None:
    """Delete the folder `relative` under `root` with all it holds; never anything outside `root`."""
    target = (root / relative).resolve()
    if target == root.resolve() or not target.is_relative_to(root.resolve()):
        log.warning("not removing %s: it is not inside %s", target, root)
        return
    shutil.rmtree(target, ignore_errors=True)
