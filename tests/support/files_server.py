"""A tiny HTTP server on loopback that serves inputs by reference, redirects, and misbehaves on cue.

with FilesServer({"/a.png": png, "/moved": Redirect("/a.png"), "/slow": Slow(b"...", 5)}) as files:
    files.url("/a.png")
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int = 302


@dataclass(frozen=True)
class Slow:
    """Sends `body` in pieces over `seconds`."""

    body: bytes
    seconds: float


@dataclass(frozen=True)
class Unsized:
    """Sends `body` chunked, with no Content-Length, so only counting the bytes can stop it."""

    body: bytes


Route = bytes | Redirect | Slow | Unsized


class FilesServer:
    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Host", "")))
                route = outer.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self._send(404, b"not here")
                elif isinstance(route, Redirect):
                    self.send_response(route.status)
                    self.send_header("Location", route.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif isinstance(route, Slow):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    pieces = 10
                    step = max(1, len(route.body) // pieces)
                    for start in range(0, len(route.body), step):
                        time.sleep(route.seconds / pieces)
                        try:
                            self.wfile.write(route.body[start : start + step])
                            self.wfile.flush()
                        except OSError:
                            return
                elif isinstance(route, Unsized):
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for start in range(0, len(route.body), 65536):
                            piece = route.body[start : start + 65536]
                            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        return
                else:
                    self._send(200, route)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> FilesServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
