"""A hostile caller's URLs (job/engine/outbound.py): no webhook or input reaches inside, no server stalls us.

Real parts throughout: loopback servers started here (one that sends a header line a second, one
that drips its body a byte at a time, webhook receivers), the /predict service under uvicorn and
the session's real ComfyUI. Loopback servers need the private-URL setting, so the tests that reach
them turn it on and show what stays refused even then; the refusals without it are shown against
the same live servers. DNS for a public name is a resolver stand-in and the public host an httpx
MockTransport stand-in, as in tests/service/test_fetch.py: neither can exist here.
"""

# The service's fixtures are imported from tests/service/conftest.py (F401) and taken as parameters (F811).
# ruff: noqa: F401, F811

from __future__ import annotations

import base64
import ipaddress
import logging
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import httpx
import pytest

from job.engine.fetch import fetch_reference
from job.engine.outbound import Endpoint, OutboundPolicy, resolve_host
from job.engine.runner import Runner
from job.engine.webhook import Notifier, deliver
from job.errors import InvalidInput, RunTimeout
from job.storage import Storages
from tests.service.conftest import MakeService, make_service, storages
from tests.support.comfy import empty_image_workflow, invert_workflow, slow_workflow
from tests.support.files_server import FilesServer, Redirect
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
PRIVATE_OK = OutboundPolicy(allow_private=True)
PUBLIC = ipaddress.ip_address("93.184.216.34")
DOCUMENT = {"status": "success", "images": []}


@dataclass
class Dripped:
    """One connection to a DrippingServer: when it opened, and when and how it ended."""

    opened: float
    ended: float | None = None
    dropped_by_client: bool = False


class DrippingServer:
    """An HTTP server on loopback that never finishes in time. `headers`: the status line, then one
    header line every `interval_s`; `body`: whole headers (Content-Length 100000), then one byte
    every `interval_s`. Each connection sends at most `pieces` and then closes; the server stops
    with the `with` block. It notices at once when a client drops the connection."""

    def __init__(self, mode: Literal["headers", "body"], interval_s: float, pieces: int = 90) -> None:
        self.mode, self.interval_s, self.pieces = mode, interval_s, pieces
        self.connections: list[Dripped] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()

    def url(self, path: str = "/a.png") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> DrippingServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            record = Dripped(time.monotonic())
            self.connections.append(record)
            threading.Thread(target=self._drip, args=(conn, record), daemon=True).start()

    def _drip(self, conn: socket.socket, record: Dripped) -> None:
        with conn:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 65536:
                request += conn.recv(4096) or b"\r\n\r\n"
            first = b"HTTP/1.1 200 OK\r\n"
            if self.mode == "body":
                first += b"Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
            try:
                conn.sendall(first)
                for index in range(self.pieces):
                    readable, _, _ = select.select([conn], [], [], self.interval_s)
                    if self._stop.is_set() or (readable and not conn.recv(1)):
                        record.dropped_by_client = not self._stop.is_set()
                        return
                    conn.sendall(f"X-Drip-{index}: 1\r\n".encode() if self.mode == "headers" else b"\x00")
            except OSError:
                record.dropped_by_client = True
            finally:
                record.ended = time.monotonic()


def predict_with_input(make: MakeService, url: str, timeout_s: float) -> tuple[httpx.Response, float]:
    with make(allow_private_urls=True, max_queue_depth=1) as service:
        started = time.monotonic()
        body = {"workflow": invert_workflow("a.png"), "inputs": {"a.png": url}, "timeout_s": timeout_s}
        response = service.predict(body)
        elapsed = time.monotonic() - started
        after = service.predict({"workflow": empty_image_workflow(size=8, color=0x0B0B0B)})
        assert after.status_code == 200, after.text  # the next caller got the place (MAX_QUEUE_DEPTH=1)
    return response, elapsed


# ------------------------------------------------------------------------ slow input servers --


@pytest.mark.comfyui
@pytest.mark.parametrize(("mode", "interval_s"), [("headers", 1.0), ("body", 0.2)])
def test_a_slow_input_server_ends_at_the_request_deadline_and_frees_its_place(
    make_service: MakeService, mode: Literal["headers", "body"], interval_s: float
) -> None:
    with DrippingServer(mode, interval_s) as slow:
        response, elapsed = predict_with_input(make_service, slow.url("/a.png"), timeout_s=3)
        wait_for(lambda: slow.connections and slow.connections[0].ended, timeout_s=2, what="the drip to end")

    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["type"] == "timeout"
    assert f"input {slow.url('/a.png')}" in error["message"]  # names the input
    assert "timeout_s" in error["message"] and "/work" not in error["message"] and "Traceback" not in response.text
    assert elapsed < 3 + 1
    assert len(slow.connections) == 1 and slow.connections[0].dropped_by_client  # we hung up, it did not


@pytest.mark.comfyui
def test_a_caller_that_hangs_up_frees_its_place_at_once(make_service: MakeService) -> None:
    with (
        DrippingServer("headers", 1.0) as slow,
        make_service(allow_private_urls=True, max_queue_depth=1) as service,
        httpx.Client(base_url=service.url, timeout=1.0) as impatient,
    ):
        body = {"workflow": invert_workflow("a.png"), "inputs": {"a.png": slow.url()}, "timeout_s": 60}
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/predict", json=body)
        impatient.close()
        left = time.monotonic()
        wait_for(lambda: service.http.get("/").json()["queued"] == 0, timeout_s=2, what="the place to be freed")
        after = service.predict({"workflow": empty_image_workflow(size=8, color=0x0C0C0C)})
        wait_for(lambda: slow.connections[0].ended, timeout_s=2, what="the abandoned fetch to hang up")

    assert after.status_code == 200, after.text
    assert slow.connections[0].ended is not None and slow.connections[0].ended - left < 2  # not at 60 s
    assert slow.connections[0].dropped_by_client


def test_input_fetch_timeout_bounds_a_slow_header_server_with_invalid_input() -> None:
    with DrippingServer("headers", 1.0) as slow:
        started = time.monotonic()
        with pytest.raises(InvalidInput, match=r"did not arrive within 2 s \(INPUT_FETCH_TIMEOUT_S\)") as refused:
            fetch_reference(slow.url(), storages=Storages(), max_bytes=10**6, timeout_s=2, policy=PRIVATE_OK)
    assert time.monotonic() - started < 3
    assert refused.value.status_code == 400 and slow.url() in refused.value.message


def test_a_fetch_never_outlives_its_request_deadline() -> None:
    with DrippingServer("body", 0.2) as slow:
        started = time.monotonic()
        with pytest.raises(RunTimeout, match="before the request's deadline") as refused:
            fetch_reference(
                slow.url(),
                storages=Storages(),
                max_bytes=10**6,
                timeout_s=60,
                policy=PRIVATE_OK,
                deadline=started + 1.5,
            )
    assert time.monotonic() - started < 2.5
    assert refused.value.status_code == 504


_EXITS_WITH_A_FETCH_IN_FLIGHT = """
import sys, threading, time
from job.engine.fetch import reference_fetcher
from job.engine.inputs import gather_inputs
from job.engine.request import parse_request
from job.settings import Settings
from job.storage import Storages

fetch = reference_fetcher(Settings(allow_private_urls=True, input_fetch_timeout_s=120), Storages())
request = parse_request({"workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}},
                         "inputs": {"a.png": sys.argv[1]}})
threading.Thread(target=gather_inputs, args=(request, fetch), kwargs={"deadline": time.monotonic() + 120},
                 daemon=True).start()
time.sleep(1.0)
print("leaving", flush=True)
"""


def test_the_process_exits_without_waiting_for_a_stuck_fetch() -> None:
    with DrippingServer("headers", 1.0) as slow:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", _EXITS_WITH_A_FETCH_IN_FLIGHT, slow.url()], capture_output=True, timeout=30
        )
    assert done.returncode == 0, done.stderr.decode()
    assert b"leaving" in done.stdout and slow.connections  # the fetch was in flight when it left
    assert time.monotonic() - started < 8, "the interpreter waited for the fetch's threads"


# ------------------------------------------------------------------------------- redirects --


def test_a_redirect_from_a_public_host_to_loopback_is_refused_at_the_hop() -> None:
    seen: list[httpx.Request] = []
    with FilesServer({"/secret.png": b"inside"}) as inside:

        def public_host_standin(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(302, headers={"Location": f"https://localhost:{inside.port}/secret.png"})

        policy = OutboundPolicy(
            resolve=lambda host, port: [PUBLIC] if host == "files.example.com" else resolve_host(host, port),
            transport=httpx.MockTransport(public_host_standin),
        )
        with pytest.raises(InvalidInput, match=r"redirected to .*localhost.*loopback.*only fetched from public"):
            fetch_reference(
                "https://files.example.com/a.png", storages=Storages(), max_bytes=1000, timeout_s=5, policy=policy
            )
    assert len(seen) == 1 and inside.requests == []  # the hop was never contacted


def test_an_input_redirected_to_comfyuis_own_port_is_refused_even_with_private_urls_allowed() -> None:
    with FilesServer({"/history": b"{}"}) as comfy_standin, FilesServer({}) as files:
        files.routes["/a.png"] = Redirect(f"http://localhost:{comfy_standin.port}/history")
        policy = OutboundPolicy(allow_private=True, refused=(Endpoint("127.0.0.1", comfy_standin.port),))
        with pytest.raises(InvalidInput, match="own ComfyUI") as refused:
            fetch_reference(files.url("/a.png"), storages=Storages(), max_bytes=1000, timeout_s=5, policy=policy)
    assert refused.value.status_code == 400
    assert [path for path, _ in files.requests] == ["/a.png"] and comfy_standin.requests == []


def test_a_webhook_redirect_is_not_followed() -> None:
    with WebhookReceiver() as inside, WebhookReceiver(statuses=[307], headers={"Location": inside.url}) as hook:
        outcome = deliver(hook.url, DOCUMENT, secret=SECRET, msg_id="msg_1", policy=PRIVATE_OK)
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("failed", 307, 1)
    assert len(hook.received) == 1 and inside.received == []


# -------------------------------------------------------------------------------- webhooks --


def loopback_forms(port: int) -> list[str]:
    return [
        f"https://127.0.0.1:{port}/hook",
        f"https://localhost:{port}/hook",
        f"https://2130706433:{port}/hook",  # 127.0.0.1 as one decimal number
        f"https://0x7f000001:{port}/hook",  # ... in hex
        f"https://017700000001:{port}/hook",  # ... in octal
        f"https://127.1:{port}/hook",
        f"https://0.0.0.0:{port}/hook",
        f"https://[::1]:{port}/hook",
        f"https://[::ffff:127.0.0.1]:{port}/hook",  # IPv4-mapped IPv6
        f"https://[64:ff9b::7f00:1]:{port}/hook",  # NAT64
        "https://10.0.0.7/hook",
        "https://192.168.1.1/hook",
        "https://[fd00::1]/hook",
        "https://169.254.169.254/computeMetadata/v1/",
    ]


def test_webhooks_to_loopback_and_private_addresses_are_refused_without_the_setting() -> None:
    with WebhookReceiver() as hook:
        port = int(hook.url.rsplit(":", 1)[1].split("/")[0])
        outcomes = {
            url: deliver(url, DOCUMENT, secret=SECRET, msg_id="m", policy=OutboundPolicy())
            for url in loopback_forms(port)
        }
        plain = deliver(hook.url, DOCUMENT, secret=SECRET, msg_id="m", policy=OutboundPolicy())
        allowed = deliver(hook.url, DOCUMENT, secret=SECRET, msg_id="m", policy=PRIVATE_OK)  # the control
    for url, outcome in outcomes.items():
        assert (outcome.status, outcome.attempts) == ("not_sent", 0), url
        assert "webhooks are only sent to public hosts" in str(outcome.error), (url, outcome.error)
    assert (plain.status, plain.attempts) == ("not_sent", 0) and "plain http:// is refused" in str(plain.error)
    assert allowed.status == "delivered" and len(hook.received) == 1  # only the allowed one arrived


def test_the_metadata_server_stays_refused_with_private_urls_allowed() -> None:
    for url in (
        "http://169.254.169.254/computeMetadata/v1/",
        "http://metadata.google.internal/",
        "http://[::ffff:169.254.169.254]/",
    ):
        outcome = deliver(url, DOCUMENT, secret=SECRET, msg_id="m", policy=PRIVATE_OK)
        assert (outcome.status, outcome.attempts) == ("not_sent", 0), url
        assert "metadata server" in str(outcome.error), outcome.error


def own_comfyui_refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "own ComfyUI" in r.getMessage()]


@pytest.mark.slow
@pytest.mark.comfyui
def test_a_webhook_at_comfyuis_own_port_is_refused_and_interrupts_nobody(
    make_service: MakeService, runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    base = runner.server.base_url
    port = int(base.rsplit(":", 1)[1])
    hooks = [f"{base}/interrupt", f"http://localhost:{port}/interrupt", f"http://0.0.0.0:{port}/interrupt",
             f"http://2130706433:{port}/interrupt", f"http://[::ffff:127.0.0.1]:{port}/interrupt"]  # fmt: skip
    caplog.set_level(logging.WARNING, logger="job.engine.webhook")
    with (
        FilesServer({}) as files,
        make_service(webhook_secret=SECRET, allow_private_urls=True, max_queue_depth=len(hooks) + 2) as service,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        running = pool.submit(service.predict, {"workflow": slow_workflow(blurs=6, prefix="sec-own"), "timeout_s": 120})
        wait_for(lambda: bool(runner.client.queue().running), timeout_s=30, what="the other caller's run")
        for hook in hooks:  # each fails before the run slot (its input is gone): its webhook goes out at once
            missing = {"workflow": invert_workflow("a.png"), "inputs": {"a.png": files.url("/gone.png")}}
            failed = service.predict({**missing, "webhook": hook})
            assert failed.status_code == 404, failed.text
        wait_for(lambda: len(own_comfyui_refusals(caplog)) == len(hooks), timeout_s=10, what="every refusal")
        still_running = bool(runner.client.queue().running)
        finished = running.result(timeout=120)

    refusals = own_comfyui_refusals(caplog)
    for hook in hooks:
        assert any(f"webhook {hook}:" in message for message in refusals), (hook, refusals)
    assert still_running, "the other run must still be running when the webhooks were refused"
    assert finished.status_code == 200, finished.text  # not "interrupted"
    notifier = Notifier.configured(service.settings)  # ComfyUI's address comes from the settings alone
    direct = notifier.send(f"{base}/interrupt", DOCUMENT, key="k")
    assert (direct.status, direct.attempts) == ("not_sent", 0) and "own ComfyUI" in str(direct.error)


def test_a_receiver_that_drips_its_answer_cannot_hold_a_delivery_past_its_deadline() -> None:
    with DrippingServer("headers", 1.0) as slow:
        started = time.monotonic()
        outcome = deliver(
            slow.url("/hook"), DOCUMENT, secret=SECRET, msg_id="m", attempts=1, timeout_s=2, policy=PRIVATE_OK
        )
    assert outcome.status == "failed" and "deadline" in str(outcome.error)
    assert time.monotonic() - started < 3
