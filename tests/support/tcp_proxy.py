"""A real TCP proxy in front of ComfyUI that can cut its websocket connections on demand.

Tests put it between the runner and ComfyUI to drop the websocket mid-run for real (a closed TCP
connection, not a mock). HTTP passes through untouched, its request lines recorded in `paths`; a
connection whose first request is `GET /ws` is a websocket, which `cut_websockets()` closes and,
from then on, refuses.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable

from job.devstack.gcs_emulator import free_port


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to `upstream_port`; `cut_websockets()` severs the socket path."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.websockets_opened = 0
        self.websockets_cut = 0
        self.websockets_refused = 0
        self.paths: list[str] = []  # "GET /history/..." for every HTTP request passed through
        self._refuse_ws = threading.Event()
        self._ws_pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CuttableProxy:
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            pairs, self._ws_pairs = self._ws_pairs, []
        for pair in pairs:
            _sever(*pair)

    def cut_websockets(self) -> None:
        """Close every open websocket connection (both sides) and refuse new ones."""
        self._refuse_ws.set()
        with self._lock:
            pairs, self._ws_pairs = self._ws_pairs, []
        for pair in pairs:
            _sever(*pair)
            self.websockets_cut += 1

    def allow_websockets(self) -> None:
        """Let new websocket connections through again."""
        self._refuse_ws.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            first = client.recv(65536)
        except OSError:
            client.close()
            return
        is_ws = first.startswith(b"GET /ws")
        if is_ws and self._refuse_ws.is_set():
            self.websockets_refused += 1
            _sever(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _sever(client)
            return
        upstream.settimeout(None)
        if is_ws:
            with self._lock:
                self._ws_pairs.append((client, upstream))
                self.websockets_opened += 1
        tap = None if is_ws else self._record
        if tap is not None:
            tap(first)
        upstream.sendall(first)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream, tap)

    def _record(self, data: bytes) -> None:
        for method, path in _REQUEST_LINE.findall(data):
            self.paths.append(f"{method.decode()} {path.decode()}")


_REQUEST_LINE = re.compile(rb"(GET|POST|PUT|DELETE) (/\S*) HTTP/1\.[01]\r\n")


def _pump(source: socket.socket, sink: socket.socket, tap: Callable[[bytes], None] | None = None) -> None:
    try:
        while data := source.recv(65536):
            if tap is not None:
                tap(data)
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _sever(source, sink)


def _sever(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
