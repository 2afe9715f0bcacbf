"""When a run may end on its websocket events alone, and when it must not.

The events are scripted here (ScriptedEvents, a stand-in for the runner's websocket subscription)
because the orders that matter depend on ComfyUI's thread timing; the real socket is exercised in
tests/comfyui/test_websocket.py. The ComfyUI client points at a closed port: any /history read fails.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from job.comfyui.client import ComfyClient
from job.comfyui.tracker import PromptTracker
from job.errors import ComfyCrashed, ExecutionFailed, RunTimeout

PROMPT = "p1"
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    "3": {"class_type": "SaveLoRA", "inputs": {}},
}


class ScriptedEvents:
    """Serves a fixed list of events, then silence; `complete` as the hub would report it."""

    def __init__(self, events: list[dict[str, Any]], *, complete: bool = True) -> None:
        self._events = list(events)
        self.complete = complete
        self.connected = True
        self.drops = 0

    def recv(self, timeout_s: float) -> dict[str, Any] | None:
        if self._events:
            return self._events.pop(0)
        time.sleep(min(timeout_s, 0.01))
        return None


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": {"prompt_id": PROMPT, **data}}


def saved(node: str, name: str) -> dict[str, Any]:
    return event("executed", node=node, output={"images": [{"filename": name, "subfolder": "", "type": "output"}]})


def tracker(events: ScriptedEvents, output_nodes: frozenset[str], timeout_s: float = 2.0) -> PromptTracker:
    return PromptTracker(
        client=ComfyClient("http://127.0.0.1:9", timeout_s=0.5),
        events=events,  # type: ignore[arg-type]
        prompt_id=PROMPT,
        workflow=WORKFLOW,
        deadline=time.monotonic() + timeout_s,
        timeout_s=timeout_s,
        poll_s=60.0,
        lost=lambda: "gone (this test has no ComfyUI)",
        output_nodes=output_nodes,
    )


def test_ends_when_every_output_node_reported() -> None:
    script = [event("execution_start", timestamp=1000), event("executing", node="2"), saved("2", "a.png")]
    entry = tracker(ScriptedEvents(script), frozenset({"2"})).wait()
    assert entry["outputs"] == {"2": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}}
    assert entry["finished_at"] > 0


def test_an_output_node_that_reports_nothing_defers_to_the_end_event() -> None:
    script = [event("execution_start", timestamp=1000), saved("2", "a.png"), event("execution_success", timestamp=2000)]
    entry = tracker(ScriptedEvents(script), frozenset({"2", "3"})).wait()
    assert ("execution_success", {"prompt_id": PROMPT, "timestamp": 2000}) in entry["status"]["messages"]


def test_without_the_end_event_an_unreported_output_is_never_assumed_done() -> None:
    script = [event("execution_start", timestamp=1000), saved("2", "a.png")]
    with pytest.raises(RunTimeout):  # it waits on, to the deadline, rather than guess
        tracker(ScriptedEvents(script), frozenset({"2", "3"}), timeout_s=0.3).wait()


def test_a_socket_that_missed_events_is_not_trusted_even_with_every_output_reported() -> None:
    script = [saved("2", "a.png"), event("execution_success", timestamp=2000)]
    with pytest.raises(ComfyCrashed):  # it asks /history instead (here: no ComfyUI)
        tracker(ScriptedEvents(script, complete=False), frozenset({"2"})).wait()


def test_an_error_event_fails_the_run_with_its_node() -> None:
    script = [event("execution_error", node_id="2", node_type="SaveImage", exception_message="disk full")]
    with pytest.raises(ExecutionFailed) as caught:
        tracker(ScriptedEvents(script), frozenset({"2"})).wait()
    assert caught.value.details["node_id"] == "2" and "disk full" in caught.value.message
