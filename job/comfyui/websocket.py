"""ComfyUI's websocket: one connection per runner, read by one thread, its events handed out by prompt_id.

Opening a socket per run cost a handshake every time, and a socket that nobody reads can
stall ComfyUI's broadcasts to it. So a hub keeps one socket (a client_id per connection), a reader
thread drains it, and each run subscribes to its own prompt_id *before* queueing (ComfyUI takes
the prompt_id from the request), so no event of the run can come before its subscriber.

A dropped socket is not an error here: subscribers are woken, the reader reconnects on its own
schedule (WEBSOCKET_RECONNECT_ATTEMPTS, WEBSOCKET_RECONNECT_DELAY_S), and the runs in flight fall
back on /history. A subscription knows whether it saw every event of its prompt (`complete`): only
then may a run trust the socket for its result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import uuid
from typing import Any

import websocket

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 5.0
_WAKE = object()  # put into every subscription when the socket drops


class Subscription:
    """The events of one prompt, in the order ComfyUI sent them."""

    def __init__(self, hub: EventHub, prompt_id: str, *, client_id: str, connected: bool) -> None:
        self.hub = hub
        self.prompt_id = prompt_id
        self.client_id = client_id  # queue the prompt under this one: ComfyUI sends its events there
        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._drops_at_start = hub.drops
        self._connected_at_start = connected

    @property
    def connected(self) -> bool:
        return self.hub.connected

    @property
    def drops(self) -> int:
        """How often the hub's socket dropped since this process began; a change means events were lost."""
        return self.hub.drops

    @property
    def complete(self) -> bool:
        """True while the socket was up from before the prompt was queued and never dropped since."""
        return self._connected_at_start and self.hub.drops == self._drops_at_start

    def recv(self, timeout_s: float) -> dict[str, Any] | None:
        """The next event, or None when none came within `timeout_s` or the socket dropped."""
        try:
            item = self._events.get(timeout=max(timeout_s, 0.0)) if timeout_s > 0 else self._events.get_nowait()
        except queue.Empty:
            return None
        return item if isinstance(item, dict) else None

    def deliver(self, item: object) -> None:
        self._events.put(item)

    def mark_incomplete(self) -> None:
        """Events may have gone elsewhere (ComfyUI chose another prompt_id): trust /history instead."""
        self._connected_at_start = False

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """One websocket to one ComfyUI at a time.

    Each connection has a client_id of its own: ComfyUI forgets a client_id when its old socket
    closes, which, for a reused one, can happen after the new socket registered it (its events
    would then go nowhere). Prompts queued under an earlier connection's id are followed on /history.
    """

    def __init__(self, ws_url: str, *, attempts: int, delay_s: float, trace: bool) -> None:
        self.ws_url = ws_url
        self.client_id = uuid.uuid4().hex
        self.drops = 0
        self._attempts = attempts
        self._delay_s = delay_s
        self._trace = trace
        self._lock = threading.Lock()
        self._subscriptions: dict[str, Subscription] = {}
        self._ws: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def subscribe(self, prompt_id: str) -> Subscription:
        """Listen for `prompt_id`'s events; connects first if the socket is down and nobody is retrying."""
        with self._lock:
            if self._ws is None and self._reader is None and not self._closed.is_set():
                self._open()  # one attempt: on failure the run relies on /history
            subscription = Subscription(self, prompt_id, client_id=self.client_id, connected=self._ws is not None)
            self._subscriptions[prompt_id] = subscription
        return subscription

    def rekey(self, subscription: Subscription, prompt_id: str) -> None:
        """ComfyUI queued the prompt under another id than asked: follow that one."""
        with self._lock:
            self._subscriptions.pop(subscription.prompt_id, None)
            subscription.prompt_id = prompt_id
            subscription.mark_incomplete()
            self._subscriptions[prompt_id] = subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if self._subscriptions.get(subscription.prompt_id) is subscription:
                del self._subscriptions[subscription.prompt_id]

    def close(self) -> None:
        """Send the close frame and go, without waiting for ComfyUI's reply (it may be busy collecting garbage)."""
        self._closed.set()
        with self._lock:
            ws, self._ws = self._ws, None
            reader = self._reader
        if ws is not None:
            _close_socket(ws)
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=_CONNECT_TIMEOUT_S)

    # --- the reader thread -----------------------------------------------------------------------

    def _open(self) -> bool:
        """Connect (lock held) and start the reader if it is not running; False when ComfyUI refused."""
        client_id = uuid.uuid4().hex
        url = f"{self.ws_url}?clientId={client_id}"
        try:
            # ComfyUI sends ASCII JSON; websocket-client's pure-Python UTF-8 check of every frame
            # is a measurable share of a small run (bench/bench_predict.py).
            ws = websocket.create_connection(
                url, timeout=_CONNECT_TIMEOUT_S, enable_multithread=True, skip_utf8_validation=True
            )
        except (OSError, websocket.WebSocketException) as exc:
            log.warning("websocket connect to %s failed: %s", url, exc)
            return False
        self.client_id = client_id
        ws.settimeout(None)  # the reader blocks until a frame comes or close() shuts the socket
        self._ws = ws
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, args=(ws,), name="comfyui-events", daemon=True)
            self._reader.start()
        return True

    def _read(self, ws: websocket.WebSocket) -> None:
        try:
            while not self._closed.is_set():
                try:
                    frame = ws.recv()
                except (OSError, websocket.WebSocketException) as exc:
                    if self._closed.is_set():
                        return
                    reconnected = self._reconnect(exc)
                    if reconnected is None:
                        return
                    ws = reconnected
                    continue
                self._dispatch(frame)
        finally:
            with self._lock:
                self._reader = None

    def _reconnect(self, exc: BaseException) -> websocket.WebSocket | None:
        """After a drop: wake every subscriber, then retry as configured; None once we give up."""
        with self._lock:
            if self._ws is not None:
                _close_socket(self._ws)
            self._ws = None
            self.drops += 1
            subscribers = list(self._subscriptions.values())
        for subscription in subscribers:
            subscription.deliver(_WAKE)
        log.warning("websocket dropped (%s); %d reconnect attempt(s) left", exc, self._attempts)
        for attempt in range(1, self._attempts + 1):
            if self._closed.wait(self._delay_s):
                return None
            with self._lock:
                if self._open():
                    log.info("websocket reconnected (attempt %d)", attempt)
                    return self._ws
        log.warning("websocket still down after %d attempt(s); runs rely on /history till the next", self._attempts)
        return None

    def _dispatch(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):  # binary frames are latent previews
            if self._trace:
                log.debug("ws <- binary frame (%d bytes)", len(frame))
            return
        if self._trace:
            log.debug("ws <- %s", frame[:2000])
        try:
            event = json.loads(frame)
        except json.JSONDecodeError:
            log.warning("ignoring a websocket frame that is not JSON: %.200s", frame)
            return
        data = event.get("data") if isinstance(event, dict) else None
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if prompt_id is None:
            return  # queue status and the like: no run waits on them
        subscription = self._subscriptions.get(prompt_id)
        if subscription is not None:
            subscription.deliver(event)


def _close_socket(ws: websocket.WebSocket) -> None:
    with contextlib.suppress(OSError, websocket.WebSocketException):
        ws.send_close()
    with contextlib.suppress(OSError, websocket.WebSocketException):
        ws.shutdown()  # type: ignore[no-untyped-call]
