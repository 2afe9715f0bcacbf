"""Inputs by reference (job/engine/fetch.py, on job/engine/outbound.py's policy): public hosts only,
every redirect re-checked, bounded.

Hosts on the public internet cannot exist here, so those tests give `fetch_reference` a resolver
stand-in (DNS) and an httpx MockTransport stand-in (the network); loopback tests use a real server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import httpx
import pytest

from job.devstack.gcs_emulator import GcsEmulator
from job.engine.fetch import IPAddress, fetch_reference
from job.engine.outbound import OutboundPolicy
from job.errors import InputNotFound, InvalidInput
from job.storage import Storages
from tests.support.files_server import FilesServer, Redirect, Slow, Unsized

PUBLIC = ipaddress.ip_address("93.184.216.34")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def resolver_standin(table: dict[str, list[str]]) -> Callable[[str, int], list[IPAddress]]:
    def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(address) for address in table[host]]

    return resolve


def no_network_standin() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        pytest.fail(f"a refused URL was fetched: {request.url}")

    return httpx.MockTransport(handler)


def fetch(
    uri: str,
    storages: Storages | None = None,
    *,
    allow_private: bool = False,
    resolve: Callable[[str, int], list[IPAddress]] | None = None,
    transport: httpx.BaseTransport | None = None,
    max_bytes: int = 1024 * 1024,
    timeout_s: float = 10.0,
) -> bytes:
    policy = OutboundPolicy(allow_private=allow_private, resolve=resolve, transport=transport)
    return fetch_reference(
        uri, storages=storages or Storages(), max_bytes=max_bytes, timeout_s=timeout_s, policy=policy
    )


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1/x.png",
        "https://localhost/x.png",
        "https://2130706433/x.png",  # 127.0.0.1 spelled as one number
        "https://0.0.0.0/x.png",
        "https://10.1.2.3/x.png",
        "https://192.168.1.1/x.png",
        "https://100.64.0.1/x.png",  # carrier-grade NAT
        "https://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://[::1]/x.png",
        "https://[fd00::1]/x.png",
        "https://[fe80::1]/x.png",
        "https://[::ffff:127.0.0.1]/x.png",
        "https://[::ffff:169.254.169.254]/x.png",
        "https://[2002:a9fe:a9fe::1]/x.png",  # 6to4 wrapping 169.254.169.254
        "https://[64:ff9b::a9fe:a9fe]/x.png",  # NAT64 wrapping 169.254.169.254
        "https://[ff02::1]/x.png",
    ],
)
def test_private_loopback_and_metadata_addresses_are_refused(uri: str) -> None:
    with pytest.raises(InvalidInput, match="only fetched from public hosts"):
        fetch(uri, transport=no_network_standin())


def test_hostname_resolving_to_private_ipv6_is_refused() -> None:
    resolve = resolver_standin({"internal.example.com": ["fd12:3456::7"]})
    with pytest.raises(InvalidInput, match=r"resolves to fd12:3456::7, a private address"):
        fetch("https://internal.example.com/a.png", resolve=resolve, transport=no_network_standin())


def test_hostname_with_one_private_address_among_public_ones_is_refused() -> None:
    resolve = resolver_standin({"mixed.example.com": [str(PUBLIC), "127.0.0.1"]})
    with pytest.raises(InvalidInput, match="loopback"):
        fetch("https://mixed.example.com/a.png", resolve=resolve, transport=no_network_standin())


@pytest.mark.parametrize(
    "location",
    [
        "https://169.254.169.254/computeMetadata/v1/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://[fd00::1]/a.png",
        "https://rebound.example.com/a.png",  # a public name whose DNS now says 10.0.0.7
        "http://files.example.com/a.png",  # a downgrade to plain http
    ],
)
def test_redirect_to_a_private_address_is_refused(location: str) -> None:
    resolve = resolver_standin({"files.example.com": [str(PUBLIC)], "rebound.example.com": ["10.0.0.7"]})
    seen: list[httpx.Request] = []

    def public_host_standin(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": location})

    with pytest.raises(InvalidInput, match=r"public hosts|only https://"):
        fetch("https://files.example.com/a.png", resolve=resolve, transport=httpx.MockTransport(public_host_standin))
    assert len(seen) == 1  # the redirect target was never contacted


def test_connection_goes_to_the_checked_address_with_the_hostname_for_tls() -> None:
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [PUBLIC]

    def public_host_standin(request: httpx.Request) -> httpx.Response:
        assert request.url.host == str(PUBLIC)  # pinned: no second DNS answer can swap the address
        assert request.headers["host"] == "files.example.com"
        assert request.extensions["sni_hostname"] == "files.example.com"  # certificate checked for the name
        return httpx.Response(200, content=PNG)

    transport = httpx.MockTransport(public_host_standin)
    data = fetch("https://files.example.com/a.png?sig=1", resolve=resolve, transport=transport)
    assert data == PNG
    assert lookups == ["files.example.com"]


def test_plain_http_is_refused_unless_allowed() -> None:
    with pytest.raises(InvalidInput, match="plain http:// is refused"):
        fetch("http://example.com/a.png", transport=no_network_standin())


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "/etc/passwd", "ftp://example.com/a.png", "s3://bucket/a.png"])
def test_other_schemes_are_refused(uri: str) -> None:
    with pytest.raises(InvalidInput, match=r"only gs://bucket/object and https://"):
        fetch(uri, transport=no_network_standin())


def test_signed_url_secrets_stay_out_of_error_messages() -> None:
    with pytest.raises(InvalidInput) as refused:
        fetch("https://127.0.0.1/a.png?X-Goog-Signature=s3cr3t", transport=no_network_standin())
    assert "s3cr3t" not in refused.value.message


def test_redirects_are_followed_and_counted() -> None:
    routes = {"/a.png": PNG, "/moved": Redirect("/a.png"), "/loop": Redirect("/loop", status=307)}
    with FilesServer(routes) as files:  # type: ignore[arg-type]
        assert fetch(files.url("/moved"), allow_private=True) == PNG
        with pytest.raises(InvalidInput, match="redirected more than 5 times"):
            fetch(files.url("/loop"), allow_private=True)


def test_missing_url_is_not_found_and_other_statuses_are_invalid() -> None:
    with FilesServer({}) as files, pytest.raises(InputNotFound, match="does not exist"):
        fetch(files.url("/nope.png"), allow_private=True)


def test_size_is_bounded_with_and_without_content_length() -> None:
    big = b"x" * 300_000
    with FilesServer({"/sized": big, "/unsized": Unsized(big)}) as files:
        for path in ("/sized", "/unsized"):
            with pytest.raises(InvalidInput, match="larger than the limit of 100000 bytes"):
                fetch(files.url(path), allow_private=True, max_bytes=100_000)
        assert fetch(files.url("/unsized"), allow_private=True, max_bytes=300_000) == big


def test_time_is_bounded_even_when_bytes_keep_dripping() -> None:
    with (
        FilesServer({"/slow": Slow(b"y" * 1000, seconds=4.0)}) as files,
        pytest.raises(InvalidInput, match=r"did not arrive within 1 s"),
    ):
        fetch(files.url("/slow"), allow_private=True, timeout_s=1.0)


def test_gs_inputs_are_read_from_the_bucket_and_bounded(gcs: GcsEmulator, storages: Storages) -> None:
    gcs.client().bucket("inputs").blob("fetch/a.png").upload_from_string(PNG)
    gcs.client().bucket("inputs").blob("fetch/empty.png").upload_from_string(b"")

    assert fetch("gs://inputs/fetch/a.png", storages) == PNG
    assert fetch("gs://inputs/fetch/empty.png", storages) == b""
    with pytest.raises(InputNotFound, match="does not exist"):
        fetch("gs://inputs/fetch/missing.png", storages)
    with pytest.raises(InvalidInput, match="larger than the limit of 10 bytes"):
        fetch("gs://inputs/fetch/a.png", storages, max_bytes=10)
    with pytest.raises(InvalidInput, match="names a bucket"):
        fetch("gs://inputs/", storages)
