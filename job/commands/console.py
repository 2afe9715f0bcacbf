"""What the commands share for the person at the terminal: the console, errors in plain words, and
the `--image NAME=PATH` arguments."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from job.errors import InvalidInput, WorkerError

console = Console(stderr=True)


def print_error(exc: WorkerError) -> None:
    """An error as a person reads it: what went wrong, per node, and what to do."""
    console.print(f"[red]error[/red] ({exc.error_type}): {exc.message}", markup=True, highlight=False)
    for node_id, entry in (exc.node_errors or {}).items():
        for item in entry.get("errors", []):
            console.print(f"  node {node_id} ({entry.get('class_type')}): {item.get('message')}", highlight=False)
    for line in exc.details.get("traceback", [])[-6:]:
        console.print(f"  | {line}", highlight=False, markup=False)


def read_image_args(values: list[str]) -> dict[str, bytes]:
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
