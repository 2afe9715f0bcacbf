"""Where a ComfyUI we started writes its files, read from the command line we started it with.

A managed ComfyUI shares our disk, so the runner reads finished outputs straight from its
output and temp folders instead of asking /view: one HTTP hop less per file, and no wait while
ComfyUI's server is held by its post-prompt garbage collection. The rules mirror ComfyUI 0.3.x's
main.py and folder_paths.py; a file not found where they point is fetched over /view instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def output_folders(comfyui_dir: Path, argv: list[str]) -> dict[str, Path]:
    """{"output": dir, "temp": dir} for a ComfyUI in `comfyui_dir` started with `argv` (last flag wins)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--base-directory")
    parser.add_argument("--output-directory")
    parser.add_argument("--temp-directory")
    args, _ = parser.parse_known_args(argv)

    def absolute(path: str) -> Path:  # ComfyUI runs in its own folder: relative paths start there
        return (comfyui_dir / path).resolve()

    base = absolute(args.base_directory or ".")
    return {
        "output": absolute(args.output_directory) if args.output_directory else base / "output",
        # ComfyUI appends "temp" to --temp-directory, unlike --output-directory.
        "temp": absolute(args.temp_directory) / "temp" if args.temp_directory else base / "temp",
    }


def local_path(folders: dict[str, Path], folder_type: str, subfolder: str, filename: str) -> Path | None:
    """The file ComfyUI reported, if it is a regular file inside the folder its type names."""
    root = folders.get(folder_type)
    if root is None:
        return None
    path = (root / subfolder / filename).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path
