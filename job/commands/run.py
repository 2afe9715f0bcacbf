"""`worker-comfyui run WORKFLOW.json`: one workflow on a local (or attached) ComfyUI, outputs to a folder."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from job.comfyui.outputs import OutputFile
from job.comfyui.process import comfy_log
from job.comfyui.tracker import Progress as RunProgress
from job.commands.console import console, print_error, read_image_args, read_local_file, say
from job.engine.boot import comfyui_runner
from job.engine.core import RunOptions, run_request
from job.engine.fetch import reference_fetcher
from job.engine.inputs import gather_inputs
from job.engine.request import parse_json, parse_request
from job.engine.runner import RunResult
from job.errors import InvalidJSON, WorkerError
from job.logs import log_to_file, on_terminal, setup_logging
from job.settings import Settings
from job.storage import Storages
from job.subprocesses import exit_on_sigterm


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run one workflow locally and write its outputs to a folder")
    parser.add_argument("workflow", type=Path, help="API-format workflow, or request document (docs/api.md section 2)")
    parser.add_argument("--image", action="append", default=[], metavar="NAME=PATH", help="an input file (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: ./out)")
    parser.add_argument("--timeout", type=float, help="deadline in seconds (default: the request's or RUN_TIMEOUT_S)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="stream ComfyUI's log to the terminal (not to a file), with debug logging",
    )  # fmt: skip  # SUPPRESS: `worker-comfyui -v run` sets it as well, and this default must not undo that
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

    comfyui_log = _quiet_comfyui(settings, args.verbose)
    try:
        request = parse_request(_read_workflow(args.workflow, settings))
        fetch = reference_fetcher(settings, storages)  # `inputs` references and URL values, as the job's
        inputs = {**gather_inputs(request, fetch), **read_image_args(args.image, settings.input_max_bytes)}
        with comfyui_runner(settings) as runner, _ProgressBar() as bar:
            options = RunOptions(timeout_s=args.timeout, on_progress=bar.update, inputs=inputs, fetch=fetch)
            completed = run_request(request, runner, options, write_to_folder)
    except WorkerError as exc:
        print_error(exc, comfyui_log)
        return 1
    except KeyboardInterrupt:
        if comfyui_log is None:
            raise
        console.print("interrupted", highlight=False)
        return 130
    except Exception as exc:
        if comfyui_log is None:
            raise
        console.print(f"[red]error[/red] (a bug in worker-comfyui): {exc.__class__.__name__}: ", end="")
        say(f"{exc}; run again with -v for the traceback")
        return 1
    for item in completed.files:
        print(folder / item.relpath)
    timings = completed.result.timings
    console.print(
        f"[green]done[/green]: {len(completed.files)} file(s) in {folder}/ "
        f"(queue {timings.queue_s:.2f} s, execution {timings.execution_s:.2f} s, total {timings.total_s:.2f} s)"
    )
    return 0


def _read_workflow(path: Path, settings: Settings) -> Any:
    """The workflow file's JSON, or InvalidInput / InvalidJSON that names the file."""
    what = "an API-format workflow or a request document (JSON, docs/api.md section 2)"
    raw = read_local_file(path, "workflow", what, settings.max_body_bytes, "MAX_BODY_BYTES")
    try:
        return parse_json(raw)
    except InvalidJSON as exc:
        raise InvalidJSON(f"workflow {path}: {exc.message}") from None


def _quiet_comfyui(settings: Settings, verbose: bool) -> Path | None:
    """For a person at a terminal (without -v): ComfyUI's log to a file, whose path is printed once,
    and one line per record of ours. The file, or None where the log stays as it was (JSON lines
    off a terminal, everything with -v)."""
    if verbose or not on_terminal(settings.log_format):
        return None
    setup_logging(settings.log_format, logging.INFO, first_lines=True)
    path = Path(tempfile.mkdtemp(prefix="worker-comfyui-")) / "comfyui.log"
    log_to_file(comfy_log, path)
    if settings.comfyui_url is None:  # an attached ComfyUI logs elsewhere: the file stays empty
        say(f"ComfyUI's log: {path}")
    return path


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
