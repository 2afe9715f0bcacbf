"""`worker-comfyui submit WORKFLOW.json`: drop a workflow into the inbox, and (with --wait) fetch its outputs.

By default the inbox is the one of the local stack (`worker-comfyui dev`, found through
DATA/stack.json); with --to it is a real bucket, reached with Application Default Credentials
(`gcloud auth application-default login`). stdout gets the inbox and outbox URIs, then the paths
of the downloaded outputs; the progress bar and messages go to stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from job.client.local_stack import StackInfo, StackNotRunning
from job.client.submission import (
    OutboxWatch,
    Submitted,
    build_request,
    download_outputs,
    error_from_result,
    object_name,
    upload,
)
from job.commands.console import console, print_error, read_image_args
from job.errors import ConfigurationError, WorkerError
from job.settings import Settings

if TYPE_CHECKING:
    import google.cloud.storage as storage

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Destination:
    """Where a request goes and where its results come back."""

    client: storage.Client
    inbox_bucket: str
    prefix: str  # inside the inbox: a folder, or the object's full name when it ends in .json
    outbox_bucket: str
    outbox_prefix: str = ""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="upload a workflow to the inbox (the local dev stack's, or --to a bucket); --wait for its outputs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("workflow", type=Path, help="API-format workflow, or request document (docs/api.md section 2)")
    parser.add_argument("--image", action="append", default=[], metavar="NAME=PATH", help="an input image (repeatable)")
    parser.add_argument(
        "--to",
        metavar="gs://INBOX/prefix",
        help="a real inbox bucket and folder (or full object name ending in .json), via Application Default "
        "Credentials; default: the inbox of the running `worker-comfyui dev`",
    )
    parser.add_argument(
        "--outbox",
        metavar="gs://OUTBOX/prefix",
        help="with --to: the outbox bucket (and OUTBOX_PREFIX) the trigger writes to (default: gs://$OUTBOX_BUCKET)",
    )
    parser.add_argument("--wait", action="store_true", help="follow the job's progress, then download the outputs")
    parser.add_argument("--out", type=Path, default=Path("out"), help="where --wait puts the outputs (default: ./out)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="how long --wait waits, in seconds")
    parser.add_argument("--data-dir", type=Path, default=Path(".dev"), help="the dev stack's folder (default: .dev)")
    parser.set_defaults(func=submit_command)


def submit_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        doc = build_request(args.workflow, read_image_args(args.image))
        destination = _destination(args, settings)
        submitted = send(destination, doc, args.workflow)
    except WorkerError as exc:
        print_error(exc)
        return 2 if isinstance(exc, ConfigurationError) else 1
    except StackNotRunning as exc:
        console.print(f"[red]error[/red]: {exc}", highlight=False)
        return 2
    if not args.wait:
        return 0
    return follow(destination.client, submitted, out_dir=args.out, timeout_s=args.timeout)


def send(destination: Destination, doc: dict[str, Any], workflow: Path) -> Submitted:
    """Upload the request under a fresh name and print where it went and where its results will be."""
    submitted = upload(
        destination.client,
        doc,
        inbox_bucket=destination.inbox_bucket,
        name=object_name(destination.prefix, workflow),
        outbox_bucket=destination.outbox_bucket,
        outbox_prefix=destination.outbox_prefix,
    )
    print(f"inbox:  {submitted.inbox_uri}")
    print(f"outbox: {submitted.outbox_uri}")
    return submitted


def follow(
    client: storage.Client,
    submitted: Submitted,
    *,
    out_dir: Path,
    timeout_s: float,
    check: Callable[[], None] | None = None,
) -> int:
    """Show the job's progress until result.json; download the outputs (exit 0) or explain the error (1).

    `check` runs on every poll (the dev stack's health check, in `worker-comfyui dev --demo`).
    """
    watch = OutboxWatch(client, submitted)
    try:
        with _StatusBar() as bar:
            result = watch.wait(timeout_s=timeout_s, on_status=bar.update, check=check)
            bar.finish(str(result.get("status")))
    except TimeoutError as exc:
        hint = "is the trigger deployed, or `worker-comfyui dev` running?"
        console.print(f"[red]error[/red]: {exc}; {hint}", highlight=False)
        return 1
    except WorkerError as exc:
        print_error(exc)
        return 1
    except KeyboardInterrupt:
        console.print(f"stopped waiting; the job goes on, its results will be in {submitted.outbox_uri}")
        return 130
    if result.get("status") != "success":
        print_error(error_from_result(result))
        return 1
    try:
        paths = download_outputs(client, result, submitted, out_dir)
    except WorkerError as exc:
        print_error(exc)
        return 1
    for path in paths:
        print(path)
    timings = result.get("timings") or {}
    console.print(
        f"[green]done[/green]: {len(paths)} file(s) in {out_dir}/ (job {timings.get('job_s', 0):.1f} s, "
        f"ComfyUI execution {timings.get('execution_s', 0):.2f} s)",
        highlight=False,
    )
    return 0


def _destination(args: argparse.Namespace, settings: Settings) -> Destination:
    if args.to is None:
        if args.outbox:
            raise ConfigurationError("--outbox goes with --to; the dev stack knows its own outbox")
        info = StackInfo.load(args.data_dir)
        return Destination(info.storage_client(), info.inbox_bucket, "", info.outbox_bucket, info.outbox_prefix)
    inbox, prefix = _split_bucket(args.to, "--to")
    outbox, outbox_prefix = _split_bucket(args.outbox or f"gs://{settings.outbox_bucket}", "--outbox")
    return Destination(_adc_client(settings), inbox, prefix, outbox, outbox_prefix)


def _split_bucket(uri: str, flag: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket:
        raise ConfigurationError(f"{flag} {uri!r}: give a bucket as gs://BUCKET or gs://BUCKET/folder")
    return bucket, prefix


def _adc_client(settings: Settings) -> storage.Client:
    from google.auth import exceptions as auth_exc

    from job.storage.gcs import gcs_client

    try:
        return gcs_client(settings.google_cloud_project)
    except auth_exc.DefaultCredentialsError:
        raise ConfigurationError(
            "no Application Default Credentials for --to: run `gcloud auth application-default login` "
            "(and set GOOGLE_CLOUD_PROJECT), or drop --to to use the local dev stack"
        ) from None


class _StatusBar:
    """A rich bar over the job's status.json: its state, the node running and its steps."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )  # fmt: skip
        self._task = self._bar.add_task("waiting for the job to start", total=None)

    def __enter__(self) -> _StatusBar:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def update(self, status: dict[str, Any]) -> None:
        state = str(status.get("state") or "starting")
        progress = status.get("progress") or {}
        label = state
        if progress.get("node"):
            step = f" step {progress['value']}/{progress['max']}" if progress.get("max") else ""
            label = f"{state}: node {progress['node']} {progress.get('class_type') or ''}{step}"
        total = progress.get("nodes_total") or None
        self._bar.update(self._task, description=label, total=total, completed=progress.get("nodes_done") or 0)
        if isinstance(status.get("error"), dict):
            self._bar.console.print(f"[yellow]{state}[/yellow]: {status['error'].get('message')}", highlight=False)

    def finish(self, status: str) -> None:
        if status != "success":
            self._bar.update(self._task, description=status)
            return
        total = self._bar.tasks[0].total or 1
        self._bar.update(self._task, description=status, total=total, completed=total)
