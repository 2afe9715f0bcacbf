"""A task's items in turn on one ComfyUI, the next one started as soon as the last has left ComfyUI.

ComfyUI runs one prompt at a time. Around its run an item makes storage round trips (uploading its
outputs, writing result.json), tens of milliseconds each on GCS, during which ComfyUI would sit
idle. So the next item starts the moment the previous one leaves ComfyUI, and at most two are in
flight: one in ComfyUI, one uploading. An item is never queued behind another's execution, so its
deadline (`timeout_s`) still measures its own run. Outcomes are reported in item order.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from job.batch.plan import Item
from job.items.work_item import ItemOutcome

# Runs one item; sets the event once the item has left ComfyUI (or has ended, whichever is first).
RunOne = Callable[[Item, threading.Event], ItemOutcome]
# Hears each outcome, in item order; False: start no further item.
OnOutcome = Callable[[Item, ItemOutcome], bool]


def run_in_turn(items: Iterable[Item], run_one: RunOne, on_outcome: OnOutcome, stop: threading.Event) -> None:
    """Run `items` with at most two in flight; returns once every started item has ended."""
    go_on = True
    in_flight: deque[tuple[Item, Future[ItemOutcome]]] = deque()

    def report_done(*, wait: bool) -> None:
        nonlocal go_on
        while in_flight and (wait or in_flight[0][1].done()):
            item, future = in_flight.popleft()
            go_on = on_outcome(item, future.result()) and go_on

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="batch-item")
    try:
        for item in items:
            if stop.is_set() or not go_on:
                break
            left = threading.Event()
            future = pool.submit(run_one, item, left)
            future.add_done_callback(lambda _, left=left: left.set())  # type: ignore[misc]
            in_flight.append((item, future))
            left.wait()
            report_done(wait=False)
        report_done(wait=True)
    except BaseException:  # SIGTERM or Ctrl-C: start nothing more, do not wait on what runs
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
