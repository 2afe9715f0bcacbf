"""A task keeps ComfyUI busy: the next item starts once the last has left ComfyUI, never more than
two are in flight, and outcomes are heard in item order."""

from __future__ import annotations

import threading
import time

from job.batch.pipeline import run_in_turn
from job.batch.plan import Item
from job.items.work_item import Disposition, ItemOutcome

ITEMS = [Item(index=index, id=f"{index:04d}", overrides={}) for index in range(8)]


def test_next_item_starts_when_the_last_leaves_comfyui_with_at_most_two_in_flight():
    lock = threading.Lock()
    in_comfyui: list[str] = []
    in_flight: list[str] = []
    most_in_comfyui = most_in_flight = 0
    heard: list[str] = []

    def run_one(item: Item, left: threading.Event) -> ItemOutcome:
        nonlocal most_in_comfyui, most_in_flight
        with lock:
            in_comfyui.append(item.id)
            in_flight.append(item.id)
            most_in_comfyui = max(most_in_comfyui, len(in_comfyui))
            most_in_flight = max(most_in_flight, len(in_flight))
        time.sleep(0.01)  # the run
        with lock:
            in_comfyui.remove(item.id)
        left.set()
        time.sleep(0.03 if item.index % 2 else 0.001)  # the upload, sometimes longer than the next run
        with lock:
            in_flight.remove(item.id)
        return ItemOutcome(Disposition.SUCCEEDED)

    def on_outcome(item: Item, outcome: ItemOutcome) -> bool:
        heard.append(item.id)
        return True

    run_in_turn(ITEMS, run_one, on_outcome, threading.Event())

    assert heard == [item.id for item in ITEMS]
    assert most_in_comfyui == 1
    assert most_in_flight == 2


def test_an_item_that_ends_without_leaving_comfyui_lets_the_next_start_and_false_stops():
    started: list[str] = []

    def run_one(item: Item, left: threading.Event) -> ItemOutcome:
        started.append(item.id)  # fails before its run: never sets `left`
        return ItemOutcome(Disposition.RETRY)

    heard: list[str] = []

    def on_outcome(item: Item, outcome: ItemOutcome) -> bool:
        heard.append(item.id)
        return len(heard) < 3

    run_in_turn(ITEMS, run_one, on_outcome, threading.Event())

    assert heard[:3] == ["0000", "0001", "0002"]
    assert len(started) <= 4  # at most the one already started when the third outcome said stop
