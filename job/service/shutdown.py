"""Stopping the way Cloud Run stops an instance: SIGTERM, about 10 s, then SIGKILL.

    SIGTERM ──> draining ─┬─ a new request: 503 shutting_down at once (Retry-After, Connection: close)
                          ├─ a request queued for the run slot: the same, at once
                          └─ the running request ─┬─ finishes within SHUTDOWN_GRACE_S ──────┐
                                                  └─ else: cut: 503 shutting_down, its      │
                                                     prompt interrupted ────────────────────┴─> uvicorn stops,
                                                                                                 ComfyUI is stopped

uvicorn's own SIGTERM handling closes the listening socket at once (a new caller gets a refused
connection, not an answer) and, past its grace, cancels the running request, which uvicorn then
answers with a text/plain 500. Here uvicorn is told to stop only once every request has its JSON
answer; and should uvicorn cancel one anyway, the guard answers it in the contract's shape.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from job.errors import ShuttingDown, seconds
from job.service.handlers import error_response, log_error

log = logging.getLogger(__name__)

T = TypeVar("T")
_ANSWER_S = 1.0  # after the cut, how long the stopped requests get to send their answers
_POLL_S = 0.05
UNGUARDED = frozenset({"/healthz"})  # answers for itself: 503 `unavailable` while draining


class Shutdown:
    """The instance's drain: `draining` from SIGTERM on, `cut` once the running request's grace is over."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.draining = asyncio.Event()
        self.cut = asyncio.Event()
        self.in_flight = 0  # HTTP requests the guard let in that have not returned yet
        self._task: asyncio.Task[None] | None = None

    def refusal(self) -> ShuttingDown:
        return ShuttingDown(
            "this instance is shutting down (SIGTERM) and takes no more requests; "
            "send the request again: another instance answers it"
        )

    def stopped(self) -> ShuttingDown:
        return ShuttingDown(
            f"this instance is shutting down (SIGTERM) and stopped the run after {seconds(self.grace_s)} "
            "(SHUTDOWN_GRACE_S); send the request again: another instance answers it"
        )

    def begin(self, stop_server: Callable[[], None]) -> None:
        """On the event loop: refuse from now on, and call `stop_server` once every request has its answer."""
        if self.draining.is_set():
            return
        log.info("SIGTERM: draining %d request(s); a running one has %g s to finish", self.in_flight, self.grace_s)
        self.draining.set()
        self._task = asyncio.get_running_loop().create_task(self._drain(stop_server))

    async def _drain(self, stop_server: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_s
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(_POLL_S)
        if self.in_flight:
            log.warning("the shutdown grace (SHUTDOWN_GRACE_S) is over: stopping %d request(s)", self.in_flight)
            self.cut.set()
            answered_by = loop.time() + _ANSWER_S
            while self.in_flight and loop.time() < answered_by:
                await asyncio.sleep(_POLL_S)
        stop_server()

    async def unless_cut(self, work: Awaitable[T], stop: Callable[[], None]) -> T:
        """`work`'s result, unless the grace runs out first: then `stop()` (which ends the work in its
        own time, e.g. by interrupting ComfyUI) and ShuttingDown at once."""
        task = asyncio.ensure_future(work)
        cut = asyncio.ensure_future(self.cut.wait())
        try:
            await asyncio.wait({task, cut}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
        if task.done():
            return task.result()
        stop()
        task.add_done_callback(_consume)
        raise self.stopped()


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned task's outcome, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


class ShutdownGuard:
    """ASGI middleware: counts requests in flight, refuses new ones while draining, and answers in
    JSON a request that uvicorn cancels before it answered."""

    def __init__(self, app: ASGIApp, shutdown: Shutdown) -> None:
        self.app = app
        self.shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.shutdown.draining.is_set() and scope["path"] not in UNGUARDED:
            refused = self.shutdown.refusal()
            log_error(None, refused)
            await error_response(refused)(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        self.shutdown.in_flight += 1
        try:
            await self.app(scope, receive, watched_send)
        except asyncio.CancelledError:
            if started:
                raise
            # uvicorn's own grace ran out (timeout_graceful_shutdown): answer, and end the task normally.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            stopped = self.shutdown.stopped()
            log_error(None, stopped)
            await error_response(stopped)(scope, receive, send)
        finally:
            self.shutdown.in_flight -= 1


class DrainingServer(uvicorn.Server):
    """uvicorn, with SIGTERM handed to `Shutdown` first; a second signal (or Ctrl-C) is uvicorn's own."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self.drain = shutdown  # not `shutdown`: uvicorn.Server has a method by that name
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Runs in the main thread, the event loop's, between two of its steps: hand over, return."""
        if sig == signal.SIGTERM and self._loop is not None and not self.drain.draining.is_set():
            self._loop.call_soon_threadsafe(self.drain.begin, self._stop)
            return
        super().handle_exit(sig, frame)

    def _stop(self) -> None:
        self.should_exit = True
