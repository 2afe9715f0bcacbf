"""What the commands share for the person at the terminal: the console, errors in plain words, and
the files named on the command line (`--image NAME=PATH`, a workflow)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from rich.console import Console

from job.engine.media import ACCEPTED_KINDS, check_input_name, check_media
from job.errors import ComfyUnavailable, ExecutionFailed, InvalidInput, WorkerError

console = Console(stderr=True)

COMFYUI_TAIL_LINES = 20  # of ComfyUI's log, shown when it failed to boot or crashed


def say(text: str) -> None:
    """A line for the person, as it is (no markup), left for the terminal to wrap, so a message or a
    path stays one line to copy."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_error(exc: WorkerError, comfyui_log: Path | None = None) -> None:
    """An error as a person reads it: what went wrong, per node, and what to do.

    With `comfyui_log` (ComfyUI's log went to that file, not the terminal), a ComfyUI that did not
    come up or died shows the file's last lines in place of the (longer) tail its message carries,
    and a failed node points there for its traceback.
    """
    message = exc.message
    tail = last_lines(comfyui_log, COMFYUI_TAIL_LINES) if comfyui_log and isinstance(exc, ComfyUnavailable) else []
    if tail:
        message = message.partition("\n")[0]
    console.print("[red]error[/red] ", end="", highlight=False)
    say(f"({exc.error_type}): {message}")
    for node_id, entry in (exc.node_errors or {}).items():
        for item in entry.get("errors", []):
            say(f"  node {node_id} ({entry.get('class_type')}): {item.get('message')}")
    if tail:
        for line in tail:
            say(f"  | {line}")
        say(f"ComfyUI's whole log: {comfyui_log}")
    elif comfyui_log is not None and isinstance(exc, ExecutionFailed):
        say(f"the node's traceback is in ComfyUI's log: {comfyui_log}")


def last_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a text file (none when it cannot be read)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as stream:
            return [line.rstrip("\n") for line in deque(stream, maxlen=count)]
    except OSError:
        return []


def read_local_file(path: Path, what: str, instead: str, limit: int | None = None, setting: str = "") -> bytes:
    """The bytes of a file named on the command line, or InvalidInput that names it (as `what`) and
    says what to give `instead`; `limit` bytes at most, read no further (a device never ends)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(-1 if limit is None else limit + 1)
    except FileNotFoundError:
        raise InvalidInput(f"{what}: there is no file {path}; give the path of {instead}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what}: {path} is a folder; give the path of {instead}") from None
    except OSError as exc:
        raise InvalidInput(f"{what}: cannot read {path} ({exc.strerror}); give the path of {instead}") from None
    if limit is not None and len(data) > limit:
        raise InvalidInput(f"{what}: {path} is larger than {limit} bytes ({setting}); give a smaller file") from None
    return data


def read_image_args(values: list[str], limit: int | None = None) -> dict[str, bytes]:
    """name -> bytes of each `--image NAME=PATH` (or bare PATH, named for its file), checked as the
    API checks an inline input, so a bad one is refused here, naming the argument; `limit` is
    INPUT_MAX_BYTES, the cap on an input fetched by reference."""
    images = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            path, name = value, Path(value).name
        what = f"--image {value}"
        data = read_local_file(Path(path), what, f"a file: {ACCEPTED_KINDS}", limit, "INPUT_MAX_BYTES")
        try:
            check_media(check_input_name(name), data)
        except InvalidInput as exc:
            raise InvalidInput(f"{what}: {exc.message}") from None
        images[name] = data
    return images
