"""Prompts ComfyUI still runs after their run gave up on them: past the deadline, or cancelled.

ComfyUI checks its interrupt flag only between nodes, so a node that runs long (a big blur, an
encoder, a sampler step on a slow device) finishes even after it was interrupted. The run answers
at its deadline anyway; the prompt it left behind is held here until ComfyUI's queue lets go of
it. Meanwhile ComfyUI is busy: the service refuses new work (job/service/predict.py) and says so in
/healthz, and a later run on the same runner waits for it, within its own deadline
(`wait_free`). When the prompt ends, `finished` deletes whatever it wrote, exactly as a run's own
outputs are deleted; its late websocket events go nowhere, since its subscription is closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from job.comfyui.client import ComfyClient
from job.errors import RunTimeout, WorkerError

log = logging.getLogger(__name__)

_POLL_S = 0.1  # how often ComfyUI's queue is read while it finishes a prompt nobody waits for


@dataclass(frozen=True)
class Overrun:
    """One prompt ComfyUI still runs though its run is over; `reason` completes "a run that ..."."""

    prompt_id: str
    reason: str
    since: float

    def describe(self) -> str:
        return (
            f"ComfyUI is still finishing a run that {self.reason}: the node it was running cannot be interrupted midway"
        )


class Overruns:
    """The prompts a runner left running on its ComfyUI; each watched by a daemon thread until it ends."""

    def __init__(self, client: ComfyClient, finished: Callable[[str], None]) -> None:
        self._client = client
        self._finished = finished  # deletes what the prompt wrote, once ComfyUI is done with it
        self._held: dict[str, Overrun] = {}
        self._settling: set[str] = set()  # being cleaned up by one thread; the others leave it to it
        self._changed = threading.Condition()
        self._closed = False

    def hold(self, prompt_id: str, reason: str, lost: Callable[[], str | None]) -> None:
        """Watch `prompt_id` until ComfyUI's queue no longer holds it (or ComfyUI is gone: `lost`)."""
        with self._changed:
            self._held[prompt_id] = Overrun(prompt_id, reason, time.monotonic())
        log.warning("prompt %s %s and still runs on ComfyUI; new work waits for it", prompt_id, reason)
        threading.Thread(target=self._watch, args=(prompt_id, lost), name="overrun", daemon=True).start()

    def holds(self, prompt_id: str) -> bool:
        with self._changed:
            return prompt_id in self._held

    def current(self) -> Overrun | None:
        """The oldest prompt ComfyUI still finishes, or None when it is free of them (no I/O)."""
        with self._changed:
            return min(self._held.values(), key=lambda overrun: overrun.since, default=None)

    def confirm(self) -> Overrun | None:
        """`current()`, checked against ComfyUI's queue now: a prompt that just ended is settled first."""
        with self._changed:
            held = list(self._held)
        for prompt_id in held:
            self._settle_if_done(prompt_id)
        return self.current()

    def wait_free(self, deadline: float, cancel: threading.Event | None = None) -> None:
        """Return once no prompt is held; RunTimeout at `deadline` (monotonic); return early on `cancel`."""
        with self._changed:
            while self._held and not (cancel is not None and cancel.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    overrun = min(self._held.values(), key=lambda held: held.since)
                    raise RunTimeout(
                        f"{overrun.describe()}, and this run's deadline passed while it waited for it; "
                        "retry, or raise timeout_s"
                    )
                self._changed.wait(min(left, _POLL_S))

    def close(self) -> None:
        """Stop watching: the runner is closing (its ComfyUI goes with it, or is not ours to clean)."""
        with self._changed:
            self._closed = True
            self._held.clear()
            self._changed.notify_all()

    def _watch(self, prompt_id: str, lost: Callable[[], str | None]) -> None:
        while not self._closed and self.holds(prompt_id):
            reason = lost()
            if reason is not None:  # the prompt died with its ComfyUI; nothing of it can be read back
                log.warning("prompt %s ended with ComfyUI (%s)", prompt_id, reason)
                self._release(prompt_id)
                return
            try:
                if self._settle_if_done(prompt_id):
                    return
            except RuntimeError:  # the runner closed its client under us: nobody to clean up for
                if self._closed:
                    return
                raise
            time.sleep(_POLL_S)

    def _settle_if_done(self, prompt_id: str) -> bool:
        """If ComfyUI no longer runs `prompt_id`, delete what it wrote and let it go; True when it did."""
        try:
            if self._client.queue().holds(prompt_id):
                return False
        except WorkerError as exc:
            log.info("could not read ComfyUI's queue for prompt %s (%s); looking again", prompt_id, exc)
            return False
        with self._changed:
            if prompt_id not in self._held or prompt_id in self._settling:
                return prompt_id not in self._held  # settled, or being settled, by another thread
            self._settling.add(prompt_id)
        try:
            self._finished(prompt_id)
        finally:
            self._release(prompt_id)
        log.info("prompt %s, which outlived its run, has ended; ComfyUI is free", prompt_id)
        return True

    def _release(self, prompt_id: str) -> None:
        with self._changed:
            self._held.pop(prompt_id, None)
            self._settling.discard(prompt_id)
            self._changed.notify_all()
