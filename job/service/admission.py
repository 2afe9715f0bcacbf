"""The queue gate: ComfyUI runs one prompt at a time, so the service runs one at a time too.

A request is first *admitted* (at most MAX_QUEUE_DEPTH requests hold a ticket, waiting or
running; the next one is refused at once with 429 and a Retry-After) and then waits for *the
slot*, the single right to run on ComfyUI. The wait is bounded by the request's own deadline and
ends early when its caller goes away, so no request hangs and no abandoned one keeps its place.
Once the instance is `closing` (SIGTERM: job/service/shutdown.py), admission and every wait for
the slot end at once with ShuttingDown.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from job.errors import QueueFull, RunTimeout

if TYPE_CHECKING:
    from job.service.shutdown import Shutdown

_DEFAULT_RUN_S = 5.0
_MAX_RETRY_AFTER_S = 300


class CallerGone(Exception):
    """The caller disconnected; nobody is waiting for this request any more."""


class QueueGate:
    """Admission and the run slot; every method runs on the event loop (no locks needed)."""

    def __init__(self, depth: int, shutdown: Shutdown | None = None) -> None:
        self.depth = depth
        self._shutdown = shutdown
        self.admitted = 0
        self._slot = asyncio.Lock()
        self._waiting = 0  # requests in the slow path of _acquire
        self._durations: deque[float] = deque(maxlen=20)

    @property
    def running(self) -> bool:
        return self._slot.locked()

    def retry_after_s(self) -> int:
        """A fair guess at when a place frees up: the typical run times the requests ahead."""
        typical = statistics.median(self._durations) if self._durations else _DEFAULT_RUN_S
        return max(1, min(_MAX_RETRY_AFTER_S, math.ceil(typical * max(self.admitted, 1) / self.depth)))

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a ticket for the request's life, or QueueFull when all MAX_QUEUE_DEPTH are taken."""
        if self._shutdown is not None and self._shutdown.draining.is_set():
            raise self._shutdown.refusal()
        if self.admitted >= self.depth:
            retry = self.retry_after_s()
            raise QueueFull(
                f"the service already holds {self.admitted} request(s), its limit (MAX_QUEUE_DEPTH); "
                f"retry in about {retry} s",
                retry_after_s=retry,
            )
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    @asynccontextmanager
    async def slot(self, deadline: float, gone: asyncio.Event) -> AsyncIterator[None]:
        """The right to run, in arrival order; RunTimeout past `deadline`, CallerGone once `gone` is set."""
        await self._acquire(deadline, gone)
        started = time.monotonic()
        try:
            yield
        finally:
            self._durations.append(time.monotonic() - started)
            self._slot.release()

    async def _acquire(self, deadline: float, gone: asyncio.Event) -> None:
        closing = self._shutdown.draining if self._shutdown is not None else asyncio.Event()
        if not self._slot.locked() and not self._waiting and not gone.is_set() and not closing.is_set():
            await self._slot.acquire()  # free and nobody waiting: granted at once, nothing to race
            return
        acquire = asyncio.ensure_future(self._slot.acquire())
        watches = [asyncio.ensure_future(gone.wait()), asyncio.ensure_future(closing.wait())]
        got = False
        self._waiting += 1
        try:
            await asyncio.wait(
                {acquire, *watches}, timeout=max(deadline - time.monotonic(), 0), return_when=asyncio.FIRST_COMPLETED
            )
            got = acquire.done() and not acquire.cancelled() and acquire.exception() is None
        finally:
            self._waiting -= 1
            for watch in watches:
                watch.cancel()
            if not got:
                await self._abandon(acquire)
        if got and (gone.is_set() or closing.is_set()):  # got the slot and lost the caller (or the instance) at once
            self._slot.release()
            got = False
        if not got:
            if gone.is_set():
                raise CallerGone
            if closing.is_set() and self._shutdown is not None:
                raise self._shutdown.refusal()
            raise RunTimeout(
                "the request's deadline passed while it waited for the runs ahead of it; "
                "raise timeout_s, or retry when the service is less busy"
            )

    async def _abandon(self, acquire: asyncio.Future[Any]) -> None:
        """Stop waiting for the slot; if it was granted meanwhile, hand it on."""
        acquire.cancel()
        try:
            granted = await acquire
        except asyncio.CancelledError:
            return
        if granted:
            self._slot.release()
