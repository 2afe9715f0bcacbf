"""A hostile caller against /predict: every mistake is a 4xx in the contract's shape, no error body
carries a traceback, a server path or a log tail, echoes are cut short, the docs need the token, and
no link in an answer comes from the caller's Host header.

All over real HTTP on the session's real ComfyUI (tests/service/conftest.py); fake-gcs-server holds
the `inputs` references. Shutdown (SIGTERM) has its own file, test_service_shutdown.py.
"""

# The service's fixtures are imported from tests/service/conftest.py (F401) and taken as parameters (F811).
# ruff: noqa: F401, F811

from __future__ import annotations

import io
import json
import logging
import re
import struct
import sys
import uuid
import wave
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from job.errors import ECHO_LIMIT, MESSAGE_LIMIT
from tests.service.conftest import MakeService, Service, b64, make_service, service, storages
from tests.support.comfy import empty_image_workflow, png_bytes
from tests.support.media import png_with

pytestmark = pytest.mark.comfyui

ERROR_ID = re.compile(r"[0-9a-f]{12}")
BODY_LIMIT = 20_000  # bytes: what any refusal here may weigh, whatever the caller sent


def server_paths(comfy_base: Path) -> list[str]:
    """Strings that name this machine's folders: none may appear in an error body."""
    return [str(Path.home()), "/work/", "site-packages", str(comfy_base), sys.prefix, "/tmp/"]


def assert_clean_error(
    response: httpx.Response, status: int, error_type: str, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> dict[str, Any]:
    """The contract's JSON error, with its id in body and log, and nothing of the server's in it."""
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("application/json")
    text = response.text
    body = response.json()
    assert body["status"] == "error"
    error = body["error"]
    assert error["type"] == error_type, error
    assert "traceback" not in error and "Traceback" not in text
    leaked = [path for path in server_paths(comfy_base) if path in text]
    assert not leaked, f"server paths in the body: {leaked}: {text[:1000]}"
    assert len(response.content) < BODY_LIMIT
    assert ERROR_ID.fullmatch(error["id"]), error
    logged = [record for record in caplog.records if error["id"] in record.getMessage()]
    assert logged, f"no log line carries error {error['id']}"
    return error  # type: ignore[no-any-return]


def save_workflow(prefix: Any) -> dict[str, Any]:
    return empty_image_workflow(size=8, prefix=prefix)


def node_error(error: dict[str, Any], node_id: str, input_name: str) -> dict[str, Any]:
    entry = error["node_errors"][node_id]
    (item,) = [item for item in entry["errors"] if item["input"] == input_name]
    return item  # type: ignore[no-any-return]


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x10\x00\xf0\xff" * 800)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


# --- the body itself -----------------------------------------------------------------------------


def test_json_nested_ten_thousand_deep_is_400_invalid_json_saying_so(
    service: Service, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deep = b"[" * 10_000 + b"]" * 10_000

    response = service.http.post("/predict", content=deep, headers={"content-type": "application/json"})

    error = assert_clean_error(response, 400, "invalid_json", comfy_base, caplog)
    assert "nested deeper than 64 levels" in error["message"]


def test_json_just_past_the_depth_limit_is_refused_too(
    service: Service, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    value: Any = "x"
    for _ in range(70):
        value = [value]
    workflow = save_workflow("deep")
    workflow["1"]["inputs"]["extra"] = value

    response = service.predict({"workflow": workflow})

    assert_clean_error(response, 400, "invalid_json", comfy_base, caplog)


# --- filename_prefix ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "says"),
    [
        pytest.param("a" * 5000, "longer than 200 bytes", id="too-long"),
        pytest.param("fox\x00.png", "NUL", id="nul"),
        pytest.param("../../escaped-{tag}", "leaves the output folder", id="dot-dot"),
        pytest.param("/tmp/escaped-{tag}", "leaves the output folder", id="absolute"),
        pytest.param("sub/../../escaped-{tag}", "leaves the output folder", id="dot-dot-inside"),
    ],
)
def test_a_bad_filename_prefix_is_400_workflow_invalid_naming_node_and_input_and_writes_nothing(
    service: Service, comfy_base: Path, caplog: pytest.LogCaptureFixture, prefix: str, says: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix = prefix.replace("{tag}", tag)

    response = service.predict({"workflow": save_workflow(prefix)})

    error = assert_clean_error(response, 400, "workflow_invalid", comfy_base, caplog)
    item = node_error(error, "2", "filename_prefix")
    assert says in item["message"] and "node 2 (SaveImage)" in error["message"]
    assert len(item.get("received", "")) < 400
    written = [*Path("/tmp").glob(f"escaped-{tag}*"), *comfy_base.rglob(f"*escaped-{tag}*")]
    written += list(comfy_base.parent.glob(f"escaped-{tag}*"))
    assert not written, f"a refused prefix was saved: {written}"


def test_a_lone_surrogate_in_filename_prefix_is_400_workflow_invalid(
    service: Service, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    document = json.dumps({"workflow": save_workflow("PREFIX")}).replace("PREFIX", "fox\\ud800")

    response = service.http.post("/predict", content=document, headers={"content-type": "application/json"})

    error = assert_clean_error(response, 400, "workflow_invalid", comfy_base, caplog)
    assert "surrogate" in node_error(error, "2", "filename_prefix")["message"]


def test_a_lone_surrogate_outside_the_workflow_is_422_not_a_500(
    service: Service, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    document = json.dumps({"workflow": save_workflow("ok"), "id": "ID"}).replace('"ID"', '"x\\udc00"')

    response = service.http.post("/predict", content=document, headers={"content-type": "application/json"})

    error = assert_clean_error(response, 422, "invalid_request", comfy_base, caplog)
    assert "`id`" in error["message"]


def test_a_surrogate_pair_is_text_and_runs(service: Service) -> None:
    document = json.dumps({"workflow": save_workflow("PREFIX")}).replace("PREFIX", "fox-\\ud83e\\udd8a")

    response = service.http.post("/predict", content=document, headers={"content-type": "application/json"})

    assert response.status_code == 200, response.text[:500]
    assert response.json()["images"][0]["filename"].startswith("fox-\U0001f98a")


# --- inputs ---------------------------------------------------------------------------------------


def test_a_non_image_inputs_reference_is_the_400_an_inline_one_gets_and_is_not_uploaded(
    service: Service, gcs_client: Any, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tag = uuid.uuid4().hex[:8]
    gcs_client.bucket("inputs").blob(f"hardening/{tag}.txt").upload_from_string(b"plain text, not a picture")
    name = f"ref-{tag}.png"
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ref"}},
    }

    by_reference = service.predict({"workflow": workflow, "inputs": {name: f"gs://inputs/hardening/{tag}.txt"}})
    inline = service.predict({"workflow": workflow, "images": [{"name": name, "image": b64(b"plain text")}]})

    for response in (by_reference, inline):
        error = assert_clean_error(response, 400, "invalid_input", comfy_base, caplog)
        assert repr(name) in error["message"]
        assert "audio (wav, flac, ogg, mp3)" in error["message"] and "png" in error["message"]
    assert not (comfy_base / "input" / name).exists(), "a refused input reached ComfyUI's input folder"


def test_an_inline_wav_is_accepted_for_load_audio(service: Service) -> None:
    tag = uuid.uuid4().hex[:8]
    workflow = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": f"tone-{tag}.wav"}},
        "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": f"audio/{tag}"}},
    }

    response = service.predict(
        {"workflow": workflow, "images": [{"name": f"tone-{tag}.wav", "image": b64(wav_bytes())}]}
    )

    assert response.status_code == 200, response.text[:1000]
    (entry,) = response.json()["files"]
    assert entry["content_type"] == "audio/flac" and entry["filename"].startswith(tag)


def test_a_decompression_bomb_is_400_invalid_input(
    service: Service, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bomb = png_with(20_000, 20_000, zlib.compress(b"\x00" * 1000))

    response = service.predict(
        {**{"workflow": save_workflow("bomb")}, "images": [{"name": "bomb.png", "image": b64(bomb)}]}
    )

    error = assert_clean_error(response, 400, "invalid_input", comfy_base, caplog)
    assert "more pixels than it is safe to decode" in error["message"]


# --- what a 4xx or 5xx carries back ---------------------------------------------------------------


def test_a_two_megabyte_echo_is_cut_short_in_the_body_and_the_log(
    service: Service, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "A" * 2_000_000
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": huge}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "echo"}},
    }

    response = service.predict({"workflow": workflow})

    error = assert_clean_error(response, 400, "workflow_invalid", comfy_base, caplog)
    assert "A" * 300 in response.text and "A" * (MESSAGE_LIMIT + 1) not in response.text
    received = [item.get("received") for entry in error["node_errors"].values() for item in entry["errors"]]
    assert all(len(value) < ECHO_LIMIT + 50 for value in received if isinstance(value, str))
    ours = [record for record in caplog.records if record.name.startswith("job.")]
    assert ours and max(len(record.getMessage()) for record in ours) < 10_000
    assert error["node_errors"]["1"]["class_type"] == "LoadImage"


def test_a_node_that_raises_is_a_500_without_traceback_whose_log_line_has_it(
    service: Service, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Valid chunks (Pillow's check passes), pixel data that is not zlib: LoadImage raises inside ComfyUI.
    broken = png_with(8, 8, b"this is not zlib data")
    name = f"broken-{uuid.uuid4().hex[:8]}.png"
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "broken"}},
    }

    response = service.predict({"workflow": workflow, "images": [{"name": name, "image": b64(broken)}]})

    error = assert_clean_error(response, 500, "execution_error", comfy_base, caplog)
    assert error["node_id"] == "1" and error["class_type"] == "LoadImage"
    (detail,) = [
        record for record in caplog.records if "raised" in record.getMessage() and error["id"] in record.getMessage()
    ]
    assert "File " in detail.getMessage(), "the traceback belongs in the log line"


def test_a_valid_image_still_runs_after_all_these_checks(service: Service) -> None:
    name = f"ok-{uuid.uuid4().hex[:8]}.png"
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "portraits/ok"}},
    }

    response = service.predict({"workflow": workflow, "images": [{"name": name, "image": b64(png_bytes())}]})

    assert response.status_code == 200, response.text[:500]
    assert response.json()["images"][0]["subfolder"] == "portraits"


# --- auth covers the docs -------------------------------------------------------------------------

DOCS = ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"]


def test_with_api_token_the_docs_need_it_by_header_or_cookie(
    make_service: MakeService, comfy_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with make_service(api_token="docs-secret") as svc:
        for path in DOCS:
            refused = svc.http.get(path)
            wrong = svc.http.get(path, headers={"Authorization": "Bearer nope"})
            assert_clean_error(refused, 401, "unauthorized", comfy_base, caplog)
            assert_clean_error(wrong, 401, "unauthorized", comfy_base, caplog)
            assert refused.headers["www-authenticate"] == "Bearer"
            assert svc.http.get(path, headers={"Authorization": "Bearer docs-secret"}).status_code == 200, path
        with httpx.Client(base_url=svc.url, cookies={"api_token": "docs-secret"}, timeout=60) as browser:
            for path in DOCS:
                assert browser.get(path).status_code == 200, path
            page = browser.get("/docs").text
            assert "/openapi.json" in page, "Swagger UI fetches the schema from the same origin, cookie and all"
            # The cookie opens the docs only: the API still wants the header.
            assert browser.get("/").status_code == 401
            assert browser.post("/predict", json={"workflow": save_workflow("c")}).status_code == 401
        assert svc.http.get("/healthz").status_code in (200, 503)


def test_public_docs_opens_the_docs_and_nothing_else(make_service: MakeService) -> None:
    with make_service(api_token="docs-secret", public_docs=True) as svc:
        for path in DOCS:
            assert svc.http.get(path).status_code == 200, path
        assert svc.http.get("/").status_code == 401
        assert svc.http.get("/models").status_code == 401


# --- links never come from Host ---------------------------------------------------------------------

ASYNC = {"workflow": empty_image_workflow(size=8, prefix="links"), "async": True}


def test_a_forged_host_header_does_not_reach_status_url_or_location(service: Service) -> None:
    response = service.predict(ASYNC, headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status_url"] == f"/status/{body['id']}"
    assert response.headers["location"] == body["status_url"]
    assert "evil" not in response.text and "evil" not in response.headers["location"]


def test_status_url_comes_from_public_url_when_set(make_service: MakeService) -> None:
    with make_service(public_url="https://worker.example.com/") as svc:
        response = svc.predict(ASYNC, headers={"Host": "evil.example"})

    assert response.status_code == 202, response.text
    request_id = response.json()["id"]
    assert response.json()["status_url"] == f"https://worker.example.com/status/{request_id}"
    assert response.headers["location"] == f"https://worker.example.com/status/{request_id}"


def test_forwarded_host_is_used_only_from_a_trusted_proxy_and_only_when_well_formed(make_service: MakeService) -> None:
    with make_service(trust_proxy_headers=True) as svc:
        forwarded = svc.predict(ASYNC, headers={"Host": "evil.example", "X-Forwarded-Host": "a.example, svc.run.app"})
        malformed = svc.predict(ASYNC, headers={"X-Forwarded-Host": "evil.example/x?y", "X-Forwarded-Proto": "https"})

    request_id = forwarded.json()["id"]
    assert forwarded.json()["status_url"] == f"https://svc.run.app/status/{request_id}", "the proxy's own entry"
    assert malformed.json()["status_url"] == f"/status/{malformed.json()['id']}"


def test_a_bad_public_url_is_refused_at_start_naming_the_variable() -> None:
    from job.errors import ConfigurationError
    from job.settings import load_settings

    with pytest.raises(ConfigurationError, match="PUBLIC_URL"):
        load_settings(public_url="evil.example/x?y")
