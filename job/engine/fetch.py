"""Inputs by reference (`gs://`, `https://`), fetched within bounds and never from our own network.

Where an `https://` input may come from is the outbound policy's call (job/engine/outbound.py:
public addresses only, every redirect re-checked, the connection pinned to the checked address,
`http://` and private hosts only with ALLOW_PRIVATE_URLS). Here are the bounds:

- size: the body is streamed and dropped past `max_bytes` (INPUT_MAX_BYTES);
- time: one wall-clock deadline over DNS, connect, headers and body together, the earlier of
  INPUT_FETCH_TIMEOUT_S from the start and the request's own deadline, so a fetch never outlives
  its request. Past INPUT_FETCH_TIMEOUT_S it is `invalid_input`; past the request's deadline,
  `timeout` (504), each naming the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from job.engine.inputs import Fetch
from job.engine.outbound import IPAddress, OutboundError, OutboundPolicy, display
from job.errors import InputNotFound, InvalidInput, RunTimeout, seconds
from job.settings import Settings
from job.storage import Storages, TooLarge, split_gs_uri

__all__ = ["IPAddress", "display", "fetch_reference", "reference_fetcher"]


def reference_fetcher(settings: Settings, storages: Storages) -> Fetch:
    """`fetch_reference` bounded as configured (INPUT_MAX_BYTES, INPUT_FETCH_TIMEOUT_S, ALLOW_PRIVATE_URLS)."""
    policy = OutboundPolicy.configured(settings)

    def fetch(uri: str, *, deadline: float | None = None, cancelled: Callable[[], bool] | None = None) -> bytes:
        return fetch_reference(
            uri,
            storages=storages,
            max_bytes=settings.input_max_bytes,
            timeout_s=settings.input_fetch_timeout_s,
            policy=policy,
            deadline=deadline,
            cancelled=cancelled,
        )

    return fetch


def fetch_reference(
    uri: str,
    *,
    storages: Storages,
    max_bytes: int,
    timeout_s: float,
    policy: OutboundPolicy | None = None,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> bytes:
    """The bytes behind a `gs://` or `https://` input, or InvalidInput / InputNotFound / RunTimeout saying why not.

    `deadline` (time.monotonic()) is the request's: the fetch ends by it, or by `timeout_s` from now;
    and within a quarter of a second once `cancelled()` is true (the caller left, another input failed).
    """
    policy = policy or OutboundPolicy()
    limit = _Limit(time.monotonic() + timeout_s, timeout_s, deadline)
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "gs":
        return _fetch_gs(uri, storages, max_bytes, limit)
    if scheme == "https" or (scheme == "http" and policy.allow_private):
        return _fetch_http(uri, max_bytes, limit, policy, cancelled)
    if scheme == "http":
        raise InvalidInput(f"input {display(uri)}: plain http:// is refused; serve it over https://")
    raise InvalidInput(f"input {display(uri)!r}: only gs://bucket/object and https:// references are supported")


class _Limit:
    """The fetch's deadline, and which bound it is: INPUT_FETCH_TIMEOUT_S's or the request's."""

    def __init__(self, own: float, timeout_s: float, request: float | None) -> None:
        self.timeout_s = timeout_s
        self.request_bound = request is not None and request < own
        self.deadline = request if request is not None and request < own else own

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def passed(self, uri: str) -> InvalidInput | RunTimeout:
        if self.request_bound:
            return RunTimeout(
                f"input {display(uri)} did not arrive before the request's deadline (timeout_s); "
                "raise timeout_s, or serve the input faster"
            )
        within = seconds(self.timeout_s)
        return InvalidInput(f"input {display(uri)} did not arrive within {within} (INPUT_FETCH_TIMEOUT_S)")


# ---------------------------------------------------------------------------------------- gs:// --


def _fetch_gs(uri: str, storages: Storages, max_bytes: int, limit: _Limit) -> bytes:
    _bucket, name = split_gs_uri(uri)
    if not name:
        raise InvalidInput(f"input {uri!r} names a bucket, not an object")
    if limit.left() <= 0:
        raise limit.passed(uri)
    try:  # a ranged read, bounded as it travels; Cloud Storage is no hostile server, a per-read timeout holds it
        return storages.read(uri, max_bytes=max_bytes, timeout_s=max(limit.left(), 0.001))
    except TooLarge:
        raise InvalidInput(f"input {uri} is larger than the limit of {max_bytes} bytes (INPUT_MAX_BYTES)") from None


# ------------------------------------------------------------------------------------- https:// --


def _fetch_http(
    uri: str, max_bytes: int, limit: _Limit, policy: OutboundPolicy, cancelled: Callable[[], bool] | None
) -> bytes:
    try:
        with policy.open("GET", uri, purpose="input", deadline=limit.deadline, cancelled=cancelled) as response:
            _check_status(uri, response)
            return _read_bounded(uri, response, max_bytes, limit)
    except OutboundError as exc:
        if time.monotonic() >= limit.deadline:
            raise limit.passed(uri) from None
        raise InvalidInput(exc.message) from None


def _check_status(uri: str, response: httpx.Response) -> None:
    if response.status_code in (404, 410):
        raise InputNotFound(f"input {display(uri)} does not exist (HTTP {response.status_code})")
    if response.status_code >= 300:
        raise InvalidInput(
            f"input {display(uri)} could not be fetched: HTTP {response.status_code} {response.reason_phrase}"
        )


def _read_bounded(uri: str, response: httpx.Response, max_bytes: int, limit: _Limit) -> bytes:
    too_large = f"input {display(uri)} is larger than the limit of {max_bytes} bytes (INPUT_MAX_BYTES)"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InvalidInput(too_large)
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():  # as it arrives; the transport ends the exchange at the deadline
        total += len(chunk)
        if total > max_bytes:
            raise InvalidInput(too_large)
        if limit.left() <= 0:
            raise limit.passed(uri)
        chunks.append(chunk)
    return b"".join(chunks)
