"""`worker-comfyui`: parse the command line and hand over to one command module."""

from __future__ import annotations

import argparse
import importlib
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worker-comfyui", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
