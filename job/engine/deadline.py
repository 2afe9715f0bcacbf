"""An httpx transport with one wall-clock deadline over a whole exchange: connect, TLS, headers, body.

httpx's timeouts are per socket operation, so a server that sends one header line a second never
trips them and holds a request for as long as it likes. Here every socket operation (connect, TLS
handshake, read, write) is given what is left of the deadline at most, so the exchange ends when
the deadline does, however the other end paces its bytes; the connection is dropped then.

    httpx.Client(transport=DeadlineTransport(deadline, cancelled))   # one per exchange

`cancelled()` (optional) ends it early, within a quarter of a second: the caller went away, or a
sibling fetch already failed the request. Failures are httpcore's (TimeoutException once the
deadline passed, `Cancelled`); the caller translates them (job/engine/outbound.py `_network_errors`).
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable, Iterable, Iterator

import httpcore
import httpx

_SLICE_S = 0.25  # longest single wait of a connect or read, so a cancellation is seen within it


def _never() -> bool:
    return False


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every request (loading the CA bundle takes milliseconds)."""
    return httpx.create_ssl_context(trust_env=False)


class DeadlineTransport(httpx.BaseTransport):
    """httpx over httpcore with `_DeadlineBackend`: one connection pool per outbound exchange."""

    def __init__(self, deadline: float, cancelled: Callable[[], bool] | None = None) -> None:
        backend = _DeadlineBackend(_Bounds(deadline, cancelled or _never))
        self._pool = httpcore.ConnectionPool(ssl_context=_tls(), retries=0, network_backend=backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        response = self._pool.handle_request(core)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, parts: Iterable[bytes]) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[bytes]:
        yield from self._parts

    def close(self) -> None:
        close = getattr(self._parts, "close", None)
        if close is not None:
            close()


class Cancelled(httpcore.NetworkError):
    """`cancelled()` said so: whoever wanted the answer is gone (the caller left, a sibling failed)."""


class _Bounds:
    """The exchange's deadline and its cancellation, and what one socket operation may take of them."""

    def __init__(self, deadline: float, cancelled: Callable[[], bool]) -> None:
        self.deadline = deadline
        self.cancelled = cancelled

    def limit(self, timeout: float | None, expired: type[httpcore.TimeoutException], *, sliced: bool = False) -> float:
        """What is left of the deadline (and of `timeout`), or `expired` / Cancelled when nothing is.
        `sliced`: at most _SLICE_S, for operations that may simply be tried again."""
        if self.cancelled():
            raise Cancelled("the exchange was cancelled: nobody waits for its answer any more")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise expired("the deadline passed")
        limit = remaining if timeout is None else min(timeout, remaining)
        return min(limit, _SLICE_S) if sliced else limit

    def again(self, timeout: float | None, waited_s: float) -> bool:
        """After a slice timed out: whether the operation is to be tried again (not when `timeout` is spent)."""
        return timeout is None or waited_s < timeout


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync sockets, every connect, TLS handshake, read and write given what is left of the
    deadline at most: the exchange ends with it, however the other end paces its bytes. Connects and
    reads wait in slices of _SLICE_S, so a cancelled exchange ends within one."""

    def __init__(self, bounds: _Bounds) -> None:
        self._bounds = bounds
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        started = time.monotonic()
        while True:
            limit = self._bounds.limit(timeout, httpcore.ConnectTimeout, sliced=True)
            try:
                stream = self._inner.connect_tcp(host, port, limit, local_address, socket_options)
            except httpcore.ConnectTimeout:
                if self._bounds.again(timeout, time.monotonic() - started):
                    continue
                raise
            return _DeadlineStream(stream, self._bounds)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.UnsupportedProtocol("outbound requests go over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(self._bounds.deadline - time.monotonic(), 0)))


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, bounds: _Bounds) -> None:
        self._inner = inner
        self._bounds = bounds

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        started = time.monotonic()
        while True:  # a recv that timed out consumed nothing (TLS included): trying again is safe
            limit = self._bounds.limit(timeout, httpcore.ReadTimeout, sliced=True)
            try:
                return self._inner.read(max_bytes, limit)
            except httpcore.ReadTimeout:
                if not self._bounds.again(timeout, time.monotonic() - started):
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # not sliced: a send that timed out may have sent part of the buffer
        self._inner.write(buffer, self._bounds.limit(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        limit = self._bounds.limit(timeout, httpcore.ConnectTimeout)  # not sliced: a handshake is not resumed
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, limit), self._bounds)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)
