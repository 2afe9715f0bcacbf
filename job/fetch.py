"""Inputs by reference (`gs://`, `https://`), fetched within bounds and never from our own network.

A URL in a request is the caller's choice, and the worker runs inside Google Cloud with a
metadata server at 169.254.169.254 that hands out its credentials. So an `https://` input is
fetched only from a public address:

- the host is resolved here, and refused when any address it resolves to is private, loopback,
  link-local, multicast, reserved or unspecified (IPv4 and IPv6, v4 embedded in v6 included);
- the connection goes to the address that was checked (the URL's host kept for `Host` and TLS
  SNI/certificate checks), so a second DNS answer cannot swap in another (DNS rebinding);
- redirects are not followed by the HTTP library: each hop is checked like the first;
- size and time are bounded: the body is streamed and dropped past `max_bytes`, and one deadline
  covers the whole fetch.

`allow_private=True` (ALLOW_PRIVATE_INPUT_URLS) lifts the address checks and allows `http://`,
for local runs whose inputs are served from this machine. httpx's exceptions become ours in
`_http_errors()` only.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
from google.api_core import exceptions as gexc

from job.errors import InputNotFound, InvalidInput
from job.settings import Settings
from job.storage import Storages, gcs_errors, split_gs_uri

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]

MAX_REDIRECTS = 5
# Names that reach the metadata server whatever DNS says; refused before any lookup.
BLOCKED_HOSTS = frozenset({"metadata.google.internal", "metadata.google.internal.", "metadata", "metadata.goog"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def reference_fetcher(settings: Settings, storages: Storages) -> Callable[[str], bytes]:
    """`fetch_reference` bounded as configured (INPUT_MAX_BYTES, INPUT_FETCH_TIMEOUT_S, ALLOW_PRIVATE_INPUT_URLS)."""

    def fetch(uri: str) -> bytes:
        return fetch_reference(
            uri,
            storages=storages,
            max_bytes=settings.input_max_bytes,
            timeout_s=settings.input_fetch_timeout_s,
            allow_private=settings.allow_private_input_urls,
        )

    return fetch


def fetch_reference(
    uri: str,
    *,
    storages: Storages,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
    resolve: Resolver | None = None,
    transport: httpx.BaseTransport | None = None,
) -> bytes:
    """The bytes behind a `gs://` or `https://` input, or InvalidInput / InputNotFound saying why not.

    `resolve` and `transport` replace DNS and the network, for tests of hosts that cannot exist here.
    """
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "gs":
        return _fetch_gs(uri, storages, max_bytes, timeout_s)
    if scheme == "https" or (scheme == "http" and allow_private):
        return _fetch_http(uri, max_bytes, timeout_s, allow_private, resolve or resolve_host, transport)
    if scheme == "http":
        raise InvalidInput(f"input {display(uri)}: plain http:// is refused; serve it over https://")
    raise InvalidInput(f"input {display(uri)!r}: only gs://bucket/object and https:// references are supported")


def display(uri: str) -> str:
    """The URI without its query, fragment or credentials: signed URLs carry secrets there."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return "(an unparsable URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else uri[:100]


# ---------------------------------------------------------------------------------------- gs:// --


def _fetch_gs(uri: str, storages: Storages, max_bytes: int, timeout_s: float) -> bytes:
    _bucket, name = split_gs_uri(uri)
    if not name:
        raise InvalidInput(f"input {uri!r} names a bucket, not an object")
    with gcs_errors(uri):
        # A ranged read: at most one byte past the limit ever travels.
        try:
            data: bytes = storages.gcs.blob(uri).download_as_bytes(end=max_bytes, timeout=timeout_s)
        except gexc.RequestRangeNotSatisfiable:
            return b""  # GCS answers a range on an empty object with 416
    if len(data) > max_bytes:
        raise InvalidInput(f"input {uri} is larger than the limit of {max_bytes} bytes (INPUT_MAX_BYTES)")
    return data


# ------------------------------------------------------------------------------------- https:// --


def _fetch_http(
    uri: str,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    resolve: Resolver,
    transport: httpx.BaseTransport | None,
) -> bytes:
    deadline = time.monotonic() + timeout_s
    try:
        url = httpx.URL(uri)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"input {display(uri)}: not a valid URL ({exc})") from None
    with httpx.Client(transport=transport, trust_env=False, follow_redirects=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            address = _checked_address(url, allow_private, resolve)
            with _http_errors(url, timeout_s):
                response = client.send(_pinned_request(client, url, address, deadline, timeout_s), stream=True)
                try:
                    if response.is_redirect and "location" in response.headers:
                        url = url.join(response.headers["location"])
                        continue
                    _check_status(url, response)
                    return _read_bounded(url, response, max_bytes, deadline, timeout_s)
                finally:
                    response.close()
    raise InvalidInput(f"input {display(uri)} redirected more than {MAX_REDIRECTS} times; give its final URL")


def _checked_address(url: httpx.URL, allow_private: bool, resolve: Resolver) -> IPAddress:
    """The address to connect to, after checking the scheme, the host and every address it has."""
    shown = display(str(url))
    if url.scheme not in ("https", "http") or (url.scheme == "http" and not allow_private):
        raise InvalidInput(f"input {shown}: only https:// URLs are fetched (a redirect led to {url.scheme}://)")
    if url.userinfo:
        raise InvalidInput(f"input {shown}: credentials in the URL are not supported; use a signed URL")
    host = url.host.lower()
    if not host:
        raise InvalidInput(f"input {shown}: the URL has no host")
    if host in BLOCKED_HOSTS and not allow_private:
        raise InvalidInput(f"input {shown}: {host} is the metadata server; inputs are only fetched from public hosts")
    if _is_ip_literal(host):
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    else:
        addresses = resolve(host, url.port or (443 if url.scheme == "https" else 80))
    if not addresses:
        raise InvalidInput(f"input {shown}: {host} does not resolve to any address")
    if not allow_private:
        for address in addresses:
            why = non_public_reason(address)
            if why:
                raise InvalidInput(
                    f"input {shown}: {host} resolves to {address}, {why}; inputs are only fetched from public hosts"
                )
    return addresses[0]


def non_public_reason(address: IPAddress) -> str | None:
    """Why this address is not on the public internet (None when it is), v4 embedded in v6 included."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        why = non_public_reason(embedded)
        return f"which embeds {embedded}, {why}" if why else None
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (the metadata server lives there)"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, why in checks:
        if getattr(address, attribute):
            return why
    return None if address.is_global else "not a public address"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address DNS gives for host (IP literals, decimal forms included, come back as themselves)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(f"input host {host!r} does not resolve ({exc}); check the URL") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


def _pinned_request(
    client: httpx.Client, url: httpx.URL, address: IPAddress, deadline: float, timeout_s: float
) -> httpx.Request:
    """A request to the checked address that still names the host for Host, SNI and the certificate."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise InvalidInput(f"input {display(str(url))} did not arrive within {timeout_s:g} s (INPUT_FETCH_TIMEOUT_S)")
    extensions: dict[str, object] = {"timeout": httpx.Timeout(remaining).as_dict()}
    if not _is_ip_literal(url.host):
        extensions["sni_hostname"] = url.host
    host_header = url.netloc.decode("ascii")
    return client.build_request(
        "GET", url.copy_with(host=str(address)), headers={"Host": host_header}, extensions=extensions
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_status(url: httpx.URL, response: httpx.Response) -> None:
    if response.status_code in (404, 410):
        raise InputNotFound(f"input {display(str(url))} does not exist (HTTP {response.status_code})")
    if response.status_code >= 300:
        raise InvalidInput(
            f"input {display(str(url))} could not be fetched: HTTP {response.status_code} {response.reason_phrase}"
        )


def _read_bounded(url: httpx.URL, response: httpx.Response, max_bytes: int, deadline: float, timeout_s: float) -> bytes:
    shown = display(str(url))
    too_large = f"input {shown} is larger than the limit of {max_bytes} bytes (INPUT_MAX_BYTES)"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InvalidInput(too_large)
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():  # as it arrives, so the deadline is checked as it drips
        total += len(chunk)
        if total > max_bytes:
            raise InvalidInput(too_large)
        if time.monotonic() > deadline:
            raise InvalidInput(f"input {shown} did not arrive within {timeout_s:g} s (INPUT_FETCH_TIMEOUT_S)")
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def _http_errors(url: httpx.URL, timeout_s: float) -> Iterator[None]:
    """httpx's failures as ours: the remote end is the caller's reference, so each is InvalidInput."""
    shown = display(str(url))
    try:
        yield
    except httpx.TimeoutException:
        raise InvalidInput(f"input {shown} did not arrive within {timeout_s:g} s (INPUT_FETCH_TIMEOUT_S)") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise InvalidInput(f"input {shown} could not be fetched: {exc.__class__.__name__}: {exc}") from None
