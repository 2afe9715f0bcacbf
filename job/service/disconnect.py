"""Noticing that an HTTP caller went away, so its prompt stops instead of running for nobody.

Once the body is read, the server's next ASGI message for the request is `http.disconnect`, and
it arrives only when the client closes its connection. A small task waits for exactly that (no
polling) and then sets two flags: `gone` for code on the event loop (the queue wait) and `cancel`
for the run's worker thread (the tracker checks it between events).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from starlette.requests import Request


class DisconnectWatch:
    """One caller's presence; `DisconnectWatch(None)` is a caller that never leaves (the warm-up)."""

    def __init__(self, request: Request | None) -> None:
        self._request = request
        self.gone = asyncio.Event()
        self.cancel = threading.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DisconnectWatch:
        if self._request is not None:
            self._watcher = asyncio.create_task(self._watch(self._request))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self.cancel.set()  # the handler itself was cancelled (shutdown): stop the run too
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def leave(self) -> None:
        self.cancel.set()
        self.gone.set()

    async def _watch(self, request: Request) -> None:
        """Wait for the disconnect message; call only after the whole body was read."""
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                self.leave()
                return
