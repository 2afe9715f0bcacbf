"""A request's inputs as bytes by name: inline images decoded, references fetched in parallel.

References are fetched on daemon threads, within the request's deadline: the first failure is
raised at once (the caller is told, and its queue place freed, without waiting for the others),
and neither a fetch still in flight nor one left behind keeps the process from exiting.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from job.engine.media import check_input_name, check_media, decode_image
from job.engine.outbound import display
from job.engine.request import WorkflowRequest
from job.errors import InvalidInput, RunTimeout, WorkerError

_MAX_PARALLEL = 8
NO_FETCH = "this way in has no fetcher for references; send the file inline in `images`"
# How long past the deadline to wait for a fetch that should have ended at it (they end themselves).
_GRACE_S = 0.5


class Fetch(Protocol):
    """Fetches one reference; ends by `deadline` (time.monotonic()) when one is given, and soon after
    `cancelled()` turns true."""

    def __call__(
        self, uri: str, *, deadline: float | None = None, cancelled: Callable[[], bool] | None = None
    ) -> bytes: ...


def gather_inputs(
    request: WorkflowRequest,
    fetch: Fetch | None = None,
    *,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, bytes]:
    """Every input the workflow needs uploaded; a bad one raises InvalidInput naming it, and a fetch
    still running at `deadline` RunTimeout naming it. Setting `cancel` (the caller left) abandons
    the fetches still running."""
    inputs = {image.name: decode_image(image.name, image.image) for image in request.images}
    references = {check_input_name(name): uri for name, uri in request.inputs.items()}
    duplicated = sorted(set(inputs) & set(references))
    if duplicated:
        raise InvalidInput(f"input name(s) {duplicated} appear in both `images` and `inputs`; use each name once")
    if references and fetch is None:
        raise InvalidInput(f"inputs by reference (`inputs`) are not available here: {NO_FETCH}")
    if references:
        assert fetch is not None
        inputs.update(fetch_references(references, fetch, deadline=deadline, cancel=cancel))
    return inputs


def fetch_references(
    references: Mapping[str, str],
    fetch: Fetch,
    *,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
    where: Mapping[str, str] | None = None,
) -> dict[str, bytes]:
    """name -> bytes of each reference (name -> URI), fetched in parallel and checked to be media a
    load node reads; the request's `inputs` and the workflow's URL values (job/engine/preflight.py)
    both come this way. A failure keeps its type (404, 400, 504), its message prefixed with
    `where[name]` when given (the node and input that named the URL)."""
    try:
        fetched = _fetch_all(dict(references), fetch, deadline, cancel)
        for name, data in fetched.items():
            try:
                # The refusal an inline input gets: not later, inside ComfyUI. A URL value is named by its URL.
                check_media(display(references[name]) if where and name in where else name, data)
            except InvalidInput as exc:
                raise _Failed(name, exc) from None
    except _Failed as failed:
        error = failed.error
        if where and failed.name in where and isinstance(error, WorkerError):
            raise type(error)(f"{where[failed.name]}: {error.message}") from None
        raise error from None
    return fetched


class _Failed(Exception):
    """One reference's fetch failed: which, and how."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(name)
        self.name = name
        self.error = error


def _fetch_all(
    references: dict[str, str], fetch: Fetch, deadline: float | None, cancel: threading.Event | None
) -> dict[str, bytes]:
    todo: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    for item in references.items():
        todo.put(item)
    done: queue.SimpleQueue[tuple[str, bytes | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()

    def cancelled() -> bool:
        return stop.is_set() or (cancel is not None and cancel.is_set())

    def work() -> None:
        while not stop.is_set():
            try:
                name, uri = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((name, fetch(uri, deadline=deadline, cancelled=cancelled), None))
            except BaseException as exc:  # handed to the gathering thread, raised there
                done.put((name, None, exc))

    for _ in range(min(_MAX_PARALLEL, len(references))):
        threading.Thread(target=work, name="fetch", daemon=True).start()
    fetched: dict[str, bytes] = {}
    try:
        while len(fetched) < len(references):
            wait = None if deadline is None else max(deadline + _GRACE_S - time.monotonic(), 0.001)
            try:
                name, data, error = done.get(timeout=wait)
            except queue.Empty:
                pending = sorted(set(references) - set(fetched))
                raise RunTimeout(
                    f"input(s) {pending} did not arrive before the request's deadline (timeout_s); "
                    "raise timeout_s, or serve them faster"
                ) from None
            if error is not None:
                raise _Failed(name, error)
            assert data is not None
            fetched[name] = data
    finally:
        stop.set()  # the answer is known: fetches still running are abandoned, none is started
    return {name: fetched[name] for name in references}
