"""ComfyUI's websocket as a stream of events with a timeout on every receive.

A dropped socket is not an error here: `recv` returns None, reconnects on its own schedule
(WEBSOCKET_RECONNECT_ATTEMPTS, WEBSOCKET_RECONNECT_DELAY_S), and the caller keeps polling /history
meanwhile. Nothing in this module can block longer than the timeout it is given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import websocket

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 5.0


class EventStream:
    """The events ComfyUI sends to one client_id."""

    def __init__(self, ws_url: str, client_id: str, *, attempts: int, delay_s: float, trace: bool) -> None:
        self.url = f"{ws_url}?clientId={client_id}"
        self._attempts_left = attempts
        self._delay_s = delay_s
        self._trace = trace
        self._ws: websocket.WebSocket | None = None
        self._next_attempt = 0.0
        self.drops = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def connect(self) -> bool:
        """Open the socket; False (and a scheduled retry) when it cannot be opened now."""
        try:
            # ComfyUI sends ASCII JSON; websocket-client's pure-Python UTF-8 check of every frame
            # cost ~3 ms per 64-px run under /predict (bench/bench_predict.py).
            self._ws = websocket.create_connection(
                self.url, timeout=_CONNECT_TIMEOUT_S, enable_multithread=True, skip_utf8_validation=True
            )
            return True
        except (OSError, websocket.WebSocketException) as exc:
            log.warning("websocket connect to %s failed: %s", self.url, exc)
            self._ws = None
            self._next_attempt = time.monotonic() + self._delay_s
            return False

    def recv(self, timeout_s: float) -> dict[str, Any] | None:
        """The next JSON event, or None when none came within `timeout_s` or the socket is down."""
        if self._ws is None:
            self._maybe_reconnect(timeout_s)
            return None
        self._ws.settimeout(max(timeout_s, 0.001))
        try:
            frame = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (OSError, websocket.WebSocketException) as exc:
            self._dropped(exc)
            return None
        if isinstance(frame, bytes):  # binary frames are latent previews
            if self._trace:
                log.debug("ws <- binary frame (%d bytes)", len(frame))
            return None
        if self._trace:
            log.debug("ws <- %s", frame[:2000])
        try:
            event: dict[str, Any] = json.loads(frame)
        except json.JSONDecodeError:
            log.warning("ignoring a websocket frame that is not JSON: %.200s", frame)
            return None
        return event

    def close(self) -> None:
        """Send the close frame and go, without waiting for ComfyUI's reply.

        The run's results are in hand by now, and ComfyUI may be busy right after a prompt (its
        post-run garbage collection holds its event loop), so waiting would only add latency.
        """
        if self._ws is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self._ws.send_close()
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self._ws.shutdown()  # type: ignore[no-untyped-call]
            self._ws = None

    def _dropped(self, exc: BaseException) -> None:
        self.drops += 1
        log.warning("websocket dropped (%s); %d reconnect attempt(s) left", exc, self._attempts_left)
        self.close()
        self._next_attempt = time.monotonic() + self._delay_s

    def _maybe_reconnect(self, timeout_s: float) -> None:
        wait = self._next_attempt - time.monotonic()
        if self._attempts_left <= 0 or wait > timeout_s:
            time.sleep(max(timeout_s, 0))
            return
        time.sleep(max(wait, 0))
        self._attempts_left -= 1
        if self.connect():
            log.info("websocket reconnected")
