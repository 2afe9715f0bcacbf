"""Bad requests, auth and size limits: every refusal in the contract's error shape, over real HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.service.conftest import MakeService, Service, b64
from tests.support.comfy import empty_image_workflow

pytestmark = pytest.mark.comfyui

TINY = {"workflow": empty_image_workflow(size=8, color=0x0A0B0C, prefix="svc-req")}


def assert_error(response_json: dict[str, object], error_type: str) -> dict[str, object]:
    assert response_json["status"] == "error"
    error = response_json["error"]
    assert isinstance(error, dict)
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_invalid_json_is_400(service: Service) -> None:
    response = service.http.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in assert_error(response.json(), "invalid_json")["message"]  # type: ignore[operator]


def test_ui_format_workflow_is_422_with_export_steps(service: Service) -> None:
    response = service.predict({"workflow": {"nodes": [], "links": [], "last_node_id": 3}})
    assert response.status_code == 422
    assert "Export (API)" in assert_error(response.json(), "ui_format_workflow")["message"]  # type: ignore[operator]


def test_unknown_node_is_400_with_node_errors(service: Service) -> None:
    workflow = {**empty_image_workflow(size=8), "9": {"class_type": "NoSuchNode", "inputs": {}}}
    response = service.predict({"workflow": workflow})
    assert response.status_code == 400
    error = assert_error(response.json(), "unknown_node")
    assert "NoSuchNode" in str(error["message"])


def test_bad_inline_image_is_400_without_echoing_it(service: Service) -> None:
    payload = "not-base64!" * 50
    response = service.predict({**TINY, "images": [{"name": "x.png", "image": payload}]})
    assert response.status_code == 400
    assert payload not in response.text
    assert_error(response.json(), "invalid_input")


def test_unknown_fields_are_refused_with_what_to_change(service: Service) -> None:
    response = service.predict({**TINY, "output": {"format": "gif"}})
    assert response.status_code == 422
    assert "output.format" in assert_error(response.json(), "invalid_request")["message"]  # type: ignore[operator]


def test_framework_validation_and_routing_errors_use_the_contract_shape(service: Service) -> None:
    bad_id = service.http.get("/status/not.a.valid.id")
    assert bad_id.status_code == 422
    assert_error(bad_id.json(), "invalid_request")

    missing = service.http.get("/no/such/route")
    assert missing.status_code == 404
    assert_error(missing.json(), "not_found")

    wrong_method = service.http.get("/predict")
    assert wrong_method.status_code == 405
    assert_error(wrong_method.json(), "method_not_allowed")


@pytest.fixture
def guarded(make_service: MakeService) -> Iterator[Service]:
    with make_service(api_token="s3cret-token") as svc:
        yield svc


def test_token_is_required_when_set(guarded: Service) -> None:
    missing = guarded.predict(TINY)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(missing.json(), "unauthorized")

    wrong = guarded.predict(TINY, headers={"Authorization": "Bearer s3cret-tokeN"})
    assert wrong.status_code == 401
    assert guarded.http.get("/models").status_code == 401
    assert guarded.http.get("/status/abc").status_code == 401

    right = guarded.predict(TINY, headers={"Authorization": "Bearer s3cret-token"})
    assert right.status_code == 200, right.text


def test_the_probe_needs_no_token_but_the_docs_do(guarded: Service) -> None:
    assert guarded.http.get("/healthz").status_code == 200
    assert guarded.http.get("/").status_code == 401
    assert guarded.http.get("/openapi.json").status_code == 401  # PUBLIC_DOCS=true would open them
    assert guarded.http.get("/docs").status_code == 401


def test_body_over_the_declared_limit_is_413(make_service: MakeService) -> None:
    # Small enough for the server to have read it all when it refuses (no reset races the answer).
    with make_service(max_body_bytes=4096) as service:
        big = {**TINY, "images": [{"name": "big.png", "image": b64(b"\0" * 6_000)}]}
        response = service.predict(big)
    assert response.status_code == 413
    assert "MAX_BODY_BYTES" in assert_error(response.json(), "payload_too_large")["message"]  # type: ignore[operator]


def test_body_growing_past_the_limit_without_content_length_is_413(make_service: MakeService) -> None:
    with make_service(max_body_bytes=64 * 1024) as service:
        # Over the limit only with the last piece, and no final chunk: the server has read every
        # byte sent when it refuses, so it closes cleanly (unread bytes would make it reset).
        pieces = [b"{" + b" " * 16_383] * 3 + [b" " * 20_000]
        status, body = _chunked_post(service.url, "/predict", pieces, finish=False)
    assert status == 413
    assert_error(json.loads(body), "payload_too_large")


def test_body_under_the_limit_passes(make_service: MakeService) -> None:
    with make_service(max_body_bytes=64 * 1024) as service:
        status, body = _chunked_post(service.url, "/predict", [json.dumps(TINY).encode()])
    assert status == 200, body


def _chunked_post(url: str, path: str, chunks: list[bytes], *, finish: bool = True) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked (no Content-Length), over a raw socket."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        for chunk in chunks:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        if finish:
            sock.sendall(b"0\r\n\r\n")
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    head_bytes, _, payload = received.partition(b"\r\n\r\n")
    status = int(head_bytes.split()[1])
    if b"transfer-encoding: chunked" in head_bytes.lower():
        payload = _dechunk(payload)
    return status, payload


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out
