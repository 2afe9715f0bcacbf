"""The one policy for every URL the worker reaches on a caller's behalf: inputs, webhooks, model downloads.

A URL in a request is the caller's choice, and the worker runs next to things a caller must never
reach: the metadata server at 169.254.169.254 (it hands out the service account's credentials),
ComfyUI's own API (its /interrupt stops whatever runs, whoever sent it), the VPC behind it.

    URL ──> scheme (https://; http:// only with ALLOW_PRIVATE_URLS), no credentials in it
        ──> host: metadata names refused before any lookup; resolved here, within the deadline
        ──> every address it resolves to: public, or refused (loopback, private, link-local, CGNAT,
            multicast, reserved, unspecified; v4 inside v6 too: mapped, 6to4, Teredo, NAT64)
        ──> ComfyUI's own address and port: refused whatever the setting
        ──> connect to the checked address (the name kept for Host, TLS SNI and the certificate),
            so a second DNS answer cannot swap in another (DNS rebinding)
        ──> a 3xx: the next hop is checked the same way (inputs), or handed back as it is (webhooks)

One wall-clock deadline covers DNS, connect, TLS, the headers and the body together. httpx's
timeouts are per socket operation, so a server that sends one header line a second never trips
them; here every socket operation's timeout is cut to what is left of the deadline
(job/engine/deadline.py), so the whole exchange ends when the deadline does.

ALLOW_PRIVATE_URLS (alias ALLOW_PRIVATE_INPUT_URLS) lifts the address checks and allows
`http://`, for local runs whose servers are on this machine; the metadata server (names and
link-local addresses) and ComfyUI's own port stay refused even then. httpx's and httpcore's
failures become ours (`OutboundError`) in `_network_errors()` only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import httpcore
import httpx

from job.engine.deadline import Cancelled, DeadlineTransport

if TYPE_CHECKING:
    from job.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]
Purpose = Literal["input", "webhook", "model"]

MAX_REDIRECTS = 5
# Names that reach the metadata server whatever DNS says; refused before any lookup, whatever the setting.
BLOCKED_HOSTS = frozenset({"metadata.google.internal", "metadata.google.internal.", "metadata", "metadata.goog"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOKUP_SLICE_S = 0.25  # a DNS wait looks at its cancellation this often
_HTTPCORE_FAILURES = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol)
_ONLY_PUBLIC = {
    "input": "inputs are only fetched from public hosts",
    "webhook": "webhooks are only sent to public hosts",
    "model": "models are only downloaded from public hosts",
}


class OutboundError(Exception):
    """Base of what this module raises; `message` names the URL (never its query) and says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refused(OutboundError):
    """The policy refused the URL or one of its redirects; that hop was never contacted."""


class DeadlinePassed(OutboundError):
    """The wall-clock deadline passed before the exchange ended; the connection was dropped."""


class Unreachable(OutboundError):
    """The other end could not be reached or spoke broken HTTP (it may work on a later try)."""


class Abandoned(OutboundError):
    """`cancelled()` said so before the exchange ended: nobody waits for its answer any more."""


@dataclass(frozen=True)
class Endpoint:
    """A host and port no outbound request may reach (ComfyUI's own)."""

    host: str
    port: int

    @classmethod
    def of(cls, base_url: str) -> Endpoint:
        url = httpx.URL(base_url)
        return cls(url.host.lower(), url.port or (443 if url.scheme == "https" else 80))


@dataclass(frozen=True)
class OutboundPolicy:
    """Where outbound requests may go, and the request that goes there, checked hop by hop.

    `resolve` and `transport` replace DNS and the network, for tests of hosts that cannot exist here.
    """

    allow_private: bool = False
    refused: tuple[Endpoint, ...] = ()
    resolve: Resolver | None = None
    transport: httpx.BaseTransport | None = None

    @classmethod
    def configured(cls, settings: Settings) -> OutboundPolicy:
        """ALLOW_PRIVATE_URLS (or its alias ALLOW_PRIVATE_INPUT_URLS); ComfyUI's base URL (COMFYUI_URL, or
        COMFYUI_HOST:COMFYUI_PORT: what its ComfyServer and Runner use) always refused."""
        return cls(
            allow_private=settings.allow_private_urls or settings.allow_private_input_urls,
            refused=(Endpoint.of(settings.comfyui().base_url),),
        )

    @contextmanager
    def open(
        self,
        method: str,
        uri: str,
        *,
        purpose: Purpose,
        deadline: float,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        max_redirects: int = MAX_REDIRECTS,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[httpx.Response]:
        """The response with its headers read and its body still to stream, every hop checked and pinned.

        Up to `max_redirects` redirects are followed (each re-checked); with 0 a 3xx comes back as it
        is. Everything until the `with` block ends counts against `deadline` (time.monotonic()), and
        ends early (Abandoned) once `cancelled()` is true. Raises Refused, DeadlinePassed, Unreachable
        or Abandoned; never contacts a refused address.
        """
        try:
            url = httpx.URL(uri)
        except httpx.InvalidURL as exc:
            raise Refused(f"{purpose} {display(uri)}: not a valid URL ({exc})") from None
        transport = self.transport or DeadlineTransport(deadline, cancelled)
        with (
            _network_errors(purpose, uri, deadline),
            httpx.Client(transport=transport, trust_env=False, follow_redirects=False, timeout=None) as client,  # noqa: S113
        ):
            for hop in range(max_redirects + 1):
                address = self.check(
                    url, purpose=purpose, deadline=deadline, first=uri if hop else None, cancelled=cancelled
                )
                request = _pinned_request(client, method, url, address, headers, content, deadline)
                response = client.send(request, stream=True)
                if max_redirects and response.is_redirect and "location" in response.headers:
                    response.close()
                    if hop == max_redirects:
                        raise Refused(
                            f"{purpose} {display(uri)} redirected more than {max_redirects} times; give its final URL"
                        )
                    url = url.join(response.headers["location"])
                    continue
                try:
                    yield response
                finally:
                    response.close()
                return

    def check(
        self,
        url: httpx.URL,
        *,
        purpose: Purpose,
        deadline: float,
        first: str | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> IPAddress:
        """The address to connect to, after checking the scheme, the host, every address it has and the
        refused endpoints; Refused otherwise. `first` is the URL that redirected here, if one did."""
        shown = display(str(url))
        subject = f"{purpose} {display(first)} (redirected to {shown})" if first else f"{purpose} {shown}"
        if url.scheme not in ("https", "http"):
            raise Refused(f"{subject}: only https:// URLs are reached (this one is {url.scheme}://)")
        if url.scheme == "http" and not self.allow_private:
            raise Refused(
                f"{subject}: plain http:// is refused; serve it over https:// "
                "(only https:// URLs are reached; ALLOW_PRIVATE_URLS allows http:// for local tests)"
            )
        if url.userinfo:
            raise Refused(f"{subject}: credentials in the URL are not supported; use a signed URL or a token")
        host = url.host.lower()
        if not host:
            raise Refused(f"{subject}: the URL has no host")
        if host in BLOCKED_HOSTS:
            raise Refused(f"{subject}: {host} is the metadata server; {_ONLY_PUBLIC[purpose]}")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = self._addresses(host, port, subject, deadline, cancelled)
        for address in addresses:
            why = non_public_reason(address)
            always = why is not None and _is_link_local(address)  # the metadata server's neighbourhood
            if why and (always or not self.allow_private):
                raise Refused(f"{subject}: {host} resolves to {address}, {why}; {_ONLY_PUBLIC[purpose]}")
        own = self._own_endpoint(host, port, addresses, deadline)
        if own is not None:
            raise Refused(
                f"{subject}: {host}:{port} is this worker's own ComfyUI ({own.host}:{own.port}); "
                f"no {purpose} may reach it"
            )
        return addresses[0]

    def _addresses(
        self, host: str, port: int, subject: str, deadline: float, cancelled: Callable[[], bool] | None
    ) -> list[IPAddress]:
        if _is_ip_literal(host):
            return [ipaddress.ip_address(host)]
        try:
            addresses = _within(deadline, self.resolve or resolve_host, host, port, cancelled)
        except socket.gaierror as exc:
            raise Unreachable(f"{subject}: {host} does not resolve ({exc}); check the URL") from None
        except TimeoutError:
            raise DeadlinePassed(f"{subject}: resolving {host} did not finish in time") from None
        except Cancelled:
            raise Abandoned(f"{subject}: abandoned while resolving {host}") from None
        if not addresses:
            raise Unreachable(f"{subject}: {host} does not resolve to any address")
        return addresses

    def _own_endpoint(self, host: str, port: int, addresses: list[IPAddress], deadline: float) -> Endpoint | None:
        """The refused endpoint this host and port reach. On ComfyUI's port any non-public address counts
        (it may listen on all of this machine's addresses), and so does any address its own host has."""
        for endpoint in self.refused:
            if endpoint.port != port:
                continue
            if host == endpoint.host or any(non_public_reason(address) for address in addresses):
                return endpoint
            try:  # a name nobody resolves now is compared by name (above) only
                own = [ipaddress.ip_address(endpoint.host)] if _is_ip_literal(endpoint.host) else []
                own = own or _within(deadline, self.resolve or resolve_host, endpoint.host, endpoint.port)
            except (OSError, TimeoutError, KeyError):
                own = []
            if set(addresses) & set(own):
                return endpoint
        return None


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


def _is_link_local(address: IPAddress) -> bool:
    embedded = _embedded_ipv4(address)
    return (embedded or address).is_link_local


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address DNS gives for host (IP literals, decimal and octal forms included, come back as
    themselves: `2130706433` and `0x7f000001` are 127.0.0.1). socket.gaierror when it has none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise socket.gaierror(str(exc)) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


def _within(
    deadline: float, resolve: Resolver, host: str, port: int, cancelled: Callable[[], bool] | None = None
) -> list[IPAddress]:
    """`resolve` on a daemon thread, given until `deadline`: getaddrinfo has no timeout of its own,
    and a lookup left behind must not keep the process from exiting. TimeoutError past it, Cancelled
    once `cancelled()` is true."""
    answer: queue.SimpleQueue[tuple[list[IPAddress] | None, BaseException | None]] = queue.SimpleQueue()

    def lookup() -> None:
        try:
            answer.put((resolve(host, port), None))
        except BaseException as exc:  # handed to the waiting thread, raised there
            answer.put((None, exc))

    threading.Thread(target=lookup, name="resolve", daemon=True).start()
    while (left := deadline - time.monotonic()) > 0 and not (cancelled is not None and cancelled()):
        with contextlib.suppress(queue.Empty):
            addresses, error = answer.get(timeout=min(left, _LOOKUP_SLICE_S))
            if error is not None:
                raise error
            return addresses or []
    raise TimeoutError if left <= 0 else Cancelled("abandoned")


def _pinned_request(
    client: httpx.Client,
    method: str,
    url: httpx.URL,
    address: IPAddress,
    headers: dict[str, str] | None,
    content: bytes | None,
    deadline: float,
) -> httpx.Request:
    """A request to the checked address that still names the host for Host, SNI and the certificate."""
    if deadline - time.monotonic() <= 0:
        raise DeadlinePassed(f"{display(str(url))}: the deadline passed before it was requested")
    extensions: dict[str, object] = {}
    if not _is_ip_literal(url.host):
        extensions["sni_hostname"] = url.host
    sent = {**(headers or {}), "Host": url.netloc.decode("ascii")}
    return client.build_request(
        method, url.copy_with(host=str(address)), headers=sent, content=content, extensions=extensions
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@contextmanager
def _network_errors(purpose: Purpose, uri: str, deadline: float) -> Iterator[None]:
    """httpx's and httpcore's failures as ours, the URL shown without its query."""
    shown = f"{purpose} {display(uri)}"
    try:
        yield
    except Cancelled:
        raise Abandoned(f"{shown}: abandoned before it finished (nobody waits for it any more)") from None
    except (httpx.TimeoutException, httpcore.TimeoutException):
        raise DeadlinePassed(f"{shown} did not finish before its deadline") from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, *_HTTPCORE_FAILURES) as exc:
        if time.monotonic() >= deadline:  # a socket closed by the deadline may surface as a read error
            raise DeadlinePassed(f"{shown} did not finish before its deadline") from None
        raise Unreachable(f"{shown} could not be reached: {type(exc).__name__}: {exc}".rstrip(": ")) from None
