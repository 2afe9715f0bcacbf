"""`worker-comfyui`: parse the command line and hand over to one command module."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from job.errors import WorkerError
from job.logs import setup_logging
from job.settings import load_settings

# Each module adds its subcommand with `register(subparsers)` and sets `func(args, settings) -> int`.
COMMAND_MODULES = (
    "job.commands.comfyui",
    "job.commands.run",
    "job.commands.job",
    "job.commands.serve",
    "job.commands.dev",
    "job.commands.submit",
    "job.commands.batch",
)
# Commands that drive the local stand-ins of Google Cloud (job/devstack), which the image's wheel
# leaves out: there they are simply not offered.
_NEEDS_DEVSTACK = frozenset({"job.commands.dev"})


def available_commands() -> tuple[str, ...]:
    """The command modules this install can run."""
    has_devstack = importlib.util.find_spec("job.devstack") is not None
    return tuple(name for name in COMMAND_MODULES if has_devstack or name not in _NEEDS_DEVSTACK)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that subcommand's module is imported (a job task starts faster)."""
    parser = argparse.ArgumentParser(prog="worker-comfyui", description=__doc__)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging (`run` on a terminal: ComfyUI's log too)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in available_commands():
        if only is None or name.rsplit(".", 1)[1] == only:
            importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if not word.startswith("-")), None)
    known = {name.rsplit(".", 1)[1] for name in available_commands()}
    args = build_parser(command if command in known else None).parse_args(words)
    try:
        settings = load_settings()
    except WorkerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    setup_logging(settings.log_format, logging.DEBUG if args.verbose else logging.INFO)
    code: int = args.func(args, settings)
    return code


if __name__ == "__main__":
    sys.exit(main())
