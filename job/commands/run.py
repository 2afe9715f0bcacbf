"""`worker-comfyui run WORKFLOW.json`: one workflow on a local (or attached) ComfyUI, outputs to a folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from job.comfyui.outputs import OutputFile
from job.comfyui.tracker import Progress as RunProgress
from job.commands.console import console, print_error, read_image_args
from job.engine.boot import comfyui_runner
from job.engine.core import RunOptions, run_request
from job.engine.inputs import gather_inputs
from job.engine.request import parse_json, parse_request
from job.engine.runner import RunResult
from job.errors import InvalidInput, WorkerError
from job.settings import Settings
from job.storage import Storages
from job.subprocesses import exit_on_sigterm


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run one workflow locally and write its outputs to a folder")
    parser.add_argument("workflow", type=Path, help="API-format workflow, or request document (docs/api.md section 2)")
    parser.add_argument("--image", action="append", default=[], metavar="NAME=PATH", help="an input file (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: ./out)")
    parser.add_argument("--timeout", type=float, help="deadline in seconds (default: the request's or RUN_TIMEOUT_S)")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    exit_on_sigterm()
    folder: Path = args.out
    storages = Storages(settings.google_cloud_project)

    def write_to_folder(files: list[OutputFile], result: RunResult) -> dict[str, str]:
        paths = {item.relpath: str(folder / item.relpath) for item in files}
        for item in files:
            storages.write(paths[item.relpath], item.data, item.content_type)
        return paths

    try:
        request = parse_request(parse_json(_read(args.workflow)))
        inputs = {**gather_inputs(request), **read_image_args(args.image)}
        with comfyui_runner(settings) as runner, _ProgressBar() as bar:
            options = RunOptions(timeout_s=args.timeout, on_progress=bar.update, inputs=inputs)
            completed = run_request(request, runner, options, write_to_folder)
    except WorkerError as exc:
        print_error(exc)
        return 1
    for item in completed.files:
        print(folder / item.relpath)
    timings = completed.result.timings
    console.print(
        f"[green]done[/green]: {len(completed.files)} file(s) in {folder}/ "
        f"(queue {timings.queue_s:.2f} s, execution {timings.execution_s:.2f} s, total {timings.total_s:.2f} s)"
    )
    return 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read workflow {path}: {exc.strerror}") from None


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
