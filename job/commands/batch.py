"""`worker-comfyui batch`: run a batch spec on this machine, or see how far a batch has got.

    worker-comfyui batch run SPEC [--tasks N] [--prefix P]   every item; N tasks share one ComfyUI
    worker-comfyui batch status PREFIX [--json]              done, failed and pending counts

SPEC and PREFIX are gs:// URIs or local paths. `worker-comfyui job` runs one task of a batch in the
cloud when BATCH_URI is set (docs/batch.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from job.commands.console import console, print_error
from job.errors import ConfigurationError, RequestError, WorkerError
from job.settings import Settings
from job.subprocesses import exit_on_sigterm

if TYPE_CHECKING:
    from job.batch.folder import BatchFolder
    from job.batch.plan import Item
    from job.batch.status import BatchStatus
    from job.items.work_item import ItemOutcome

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="run a batch spec locally, or show a batch's progress",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="batch_action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run every item of a batch spec on this machine, with a progress bar")
    run.add_argument("spec", help="the batch spec: a path or gs://bucket/name.batch.json")
    run.add_argument("--tasks", type=int, default=1, help="tasks sharing the items, as Cloud Run would (default 1)")
    run.add_argument("--prefix", help="where items go, instead of the spec's `prefix` (gs://bucket/path/ or a folder)")
    run.set_defaults(func=batch_run_command)
    status = actions.add_parser("status", help="done, failed and pending counts of a batch")
    status.add_argument("prefix", help="the batch's prefix: gs://bucket/path/ or a folder")
    status.add_argument("--json", action="store_true", help="print the counts as JSON")
    status.set_defaults(func=batch_status_command)


def batch_task_command(settings: Settings, prefix: str | None) -> int:
    """`worker-comfyui job` with BATCH_URI: exit 0 (share done), 1 (retry the task) or 2 (fix the spec)."""
    from job.batch.task import run_batch_task

    try:
        report = run_batch_task(settings, prefix)
    except (ConfigurationError, RequestError) as exc:
        log.error("batch spec %s: %s (%s); nothing was run", settings.batch_uri, exc.message, exc.error_type)
        return 2
    except WorkerError as exc:
        log.error("the batch task could not finish: %s (%s)", exc.message, exc.error_type)
        return 1
    return report.exit_code


def batch_run_command(args: argparse.Namespace, settings: Settings) -> int:
    from job.batch.local import run_local_batch
    from job.batch.task import prepare_batch
    from job.storage import Storages

    exit_on_sigterm()
    if args.tasks < 1:
        console.print("[red]error[/red]: --tasks must be at least 1")
        return 2
    storages = Storages(settings.google_cloud_project)
    try:
        prepared = prepare_batch(args.spec, storages, settings, prefix=args.prefix)
    except WorkerError as exc:
        print_error(exc)
        return 2
    items, folder = prepared.items, prepared.folder
    console.print(f"batch [bold]{prepared.batch.id}[/bold]: {len(items)} items to {folder.prefix}", highlight=False)
    try:
        done_before = len(folder.finished_items() & {item.id for item in items})
        with _ItemsBar(len(items), done_before) as bar:
            reports = run_local_batch(prepared, settings, storages, tasks=args.tasks, on_item=bar.advance)
    except WorkerError as exc:
        print_error(exc)
        return 1
    outcomes: dict[str, int] = {}
    for report in reports:
        for name, count in report.outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + count
    return _print_status(folder, outcomes)


def batch_status_command(args: argparse.Namespace, settings: Settings) -> int:
    from job.batch.folder import BatchFolder
    from job.batch.status import read_status
    from job.storage import Storages

    try:
        status = read_status(BatchFolder(Storages(settings.google_cloud_project), args.prefix))
    except WorkerError as exc:
        print_error(exc)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(status.as_dict(), indent=2) + "\n")
        return 0
    _print_counts(status)
    return 0


def _print_status(folder: BatchFolder, outcomes: dict[str, int]) -> int:
    from job.batch.status import read_status

    status = read_status(folder)
    ran = ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items())) or "nothing to run"
    console.print(f"this run: {ran}", highlight=False)
    _print_counts(status)
    return 0 if not status.failed and not status.pending else 1


def _print_counts(status: BatchStatus) -> None:
    console.print(
        f"batch [bold]{status.batch}[/bold] at {status.prefix}: {status.total} items, "
        f"[green]{len(status.succeeded)} succeeded[/green], [red]{len(status.failed)} failed[/red], "
        f"{len(status.pending)} pending",
        highlight=False,
    )
    for item_id, error in list(status.failed.items())[:20]:
        console.print(f"  {item_id}: {error.get('type')}: {error.get('message')}", highlight=False, markup=False)
    if len(status.failed) > 20:
        console.print(f"  ... and {len(status.failed) - 20} more", highlight=False)
    if status.summary is not None:
        console.print(f"summary: {status.prefix}summary.json ({status.summary.get('status')})", highlight=False)


class _ItemsBar:
    """A rich bar over the batch's items; tasks call `advance` from their threads."""

    def __init__(self, total: int, done: int) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=not sys.stderr.isatty(),
        )  # fmt: skip
        self._task = self._bar.add_task("items", total=total, completed=done)
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> _ItemsBar:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def advance(self, item: Item, outcome: ItemOutcome) -> None:
        """One item ran: a result (success or error) advances the bar; a retry leaves it pending."""
        with self._lock:
            kind = outcome.disposition.value
            self._counts[kind] = self._counts.get(kind, 0) + 1
            notes = [f"{self._counts[k]} {k}" for k in ("failed", "gave_up", "retry") if self._counts.get(k)]
            label = f"items ({', '.join(notes)})" if notes else "items"
            self._bar.update(self._task, advance=0 if kind == "retry" else 1, description=label)
