"""`worker-comfyui run WORKFLOW.json`: one workflow on a local (or attached) ComfyUI, outputs to a folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from job.boot import comfyui_runner
from job.comfyui.tracker import Progress as RunProgress
from job.errors import InvalidInput, WorkerError
from job.inputs import gather_inputs
from job.request import parse_json, parse_request
from job.response import apply_output_format
from job.settings import Settings
from job.subprocesses import exit_on_sigterm

console = Console(stderr=True)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run one workflow locally and write its outputs to a folder")
    parser.add_argument("workflow", type=Path, help="API-format workflow, or a request document (CONTRACT.md)")
    parser.add_argument("--image", action="append", default=[], metavar="NAME=PATH", help="an input file (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: ./out)")
    parser.add_argument("--timeout", type=float, help="deadline in seconds (default: the request's or RUN_TIMEOUT_S)")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    exit_on_sigterm()
    try:
        request = parse_request(parse_json(_read(args.workflow)))
        inputs = gather_inputs(request)
        inputs.update(readread_image_args(args.image))
        with comfyui_runner(settings) as runner, _ProgressBar() as bar:
            result = runner.run(
                request.workflow,
                inputs=inputs,
                timeout_s=args.timeout or request.timeout_s,
                on_progress=bar.update,
            )
        files = apply_output_format(result.files, request.output)
    except WorkerError as exc:
        print_error(exc)
        return 1
    folder = args.out
    for item in files:
        path = folder / item.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.data)
        print(path)
    console.print(
        f"[green]done[/green]: {len(files)} file(s) in {folder}/ "
        f"(queue {result.timings.queue_s:.2f} s, execution {result.timings.execution_s:.2f} s, "
        f"total {result.timings.total_s:.2f} s)"
    )
    return 0


def print_error(exc: WorkerError) -> None:
    """An error as a person reads it: what went wrong, per node, and what to do."""
    console.print(f"[red]error[/red] ({exc.error_type}): {exc.message}", markup=True, highlight=False)
    for node_id, entry in (exc.node_errors or {}).items():
        for item in entry.get("errors", []):
            console.print(f"  node {node_id} ({entry.get('class_type')}): {item.get('message')}", highlight=False)
    for line in exc.details.get("traceback", [])[-6:]:
        console.print(f"  | {line}", highlight=False, markup=False)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read workflow {path}: {exc.strerror}") from None


def readread_image_args(values: list[str]) -> dict[str, bytes]:
    images = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            path, name = value, Path(value).name
        try:
            images[name] = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidInput(f"--image {value}: cannot read {path}: {exc.strerror}") from None
    return images


class _ProgressBar:
    """A rich bar over nodes, with the running node and its step count."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=not sys.stderr.isatty(),
        )  # fmt: skip
        self._task = self._bar.add_task("booting ComfyUI", total=None)
        self._last = 0.0

    def __enter__(self) -> _ProgressBar:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def update(self, p: RunProgress) -> None:
        now = time.monotonic()
        if now - self._last < 0.05 and p.value != p.max:
            return
        self._last = now
        step = f" step {p.value}/{p.max}" if p.max else ""
        label = f"node {p.node} {p.class_type or ''}{step}" if p.node else p.state
        self._bar.update(self._task, description=label, total=p.nodes_total, completed=p.nodes_done)
