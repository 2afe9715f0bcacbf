"""Hostile deliveries to the Cloud Function: a permanent fault is acknowledged (2xx) and logged as
`failed` with its reason, claims nothing, starts nothing and writes nothing anywhere; only a
transient fault answers 5xx, so that Eventarc redelivers just what a later try may cure.

Everything runs for real: functions-framework's app loaded from trigger/main.py as Cloud Functions
loads it, fake-gcs-server, and the Admin API stand-in (the one stand-in: Cloud Run cannot run here).
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from job.devstack.gcs_emulator import GcsEmulator, free_port
from job.devstack.run_api import DEFAULT_JOB, RunApiStandin
from tests.support.gcs_events import finalized_event, golden_event, post_body
from tests.trigger.conftest import WORKFLOW, Function, read_claim, set_trigger_env
from trigger import logs
from trigger.errors import PermanentError
from trigger.events import parse_storage_object

FAILED_BY_FRAMEWORK = "not a CloudEvent functions-framework can read"


@pytest.fixture
def run_api() -> Iterator[RunApiStandin]:
    with RunApiStandin(jobs=[DEFAULT_JOB]) as api:
        yield api


@pytest.fixture
def function(monkeypatch: pytest.MonkeyPatch, gcs: GcsEmulator, run_api: RunApiStandin, caplog) -> Function:
    caplog.set_level(logging.INFO, logger="trigger")
    set_trigger_env(monkeypatch, gcs, run_api)
    return Function()


@pytest.fixture
def emulator_files(gcs: GcsEmulator) -> Any:
    """Every path fake-gcs-server keeps on disk now; call the result again to compare (nothing written)."""

    def _files() -> set[Path]:
        return set((gcs.root / "data").rglob("*"))

    return _files


def _lines(caplog, action: str) -> list[dict[str, Any]]:
    """The trigger's log lines for `action`, each as Cloud Logging reads it: one JSON object per line."""
    formatter = logs.JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "trigger" and getattr(r, "action", "") == action]
    assert all("\n" not in line for line in lines)
    return [json.loads(line) for line in lines]


def _claims(bucket: Any) -> list[str]:
    return [blob.name for blob in bucket.list_blobs(prefix="_claims/")]


def _assert_refused(response, caplog, run_api, says: str) -> dict[str, Any]:
    """Acknowledged, one `failed` line whose reason says why, and no Admin API call at all."""
    assert response.status_code == 200, response.data[:300]
    [line] = _lines(caplog, "failed")
    assert line["severity"] == "ERROR"
    assert says in line["reason"], line["reason"]
    assert run_api.runs == [] and run_api.executions() == []
    return line


@pytest.mark.parametrize(
    ("bucket", "says"),
    [
        ("../..", "holds characters other than"),  # was a ValueError inside google-cloud-storage: 500
        ("inbox/../outbox", "holds characters other than"),
        ("Inbox", "holds characters other than"),
        ("ab", "is 2 characters"),
        ("b" * 64, "is 64 characters"),
        (".".join(["b" * 63] * 3) + "." + "b" * 31, "is 223 characters"),
        ("a." + "b" * 64, "dot-separated part over 63"),
        ("in..box", "holds '..'"),
        ("-inbox", "holds characters other than"),
        ("192.168.5.4", "is an IP address"),
        ("goog-inbox", "which GCS reserves"),
    ],
)
def test_a_bucket_that_breaks_gcs_naming_rules_is_acknowledged_before_any_call(
    function, run_api, caplog, emulator_files, bucket, says
):
    before = emulator_files()

    response = function.deliver(finalized_event(bucket, "x.json", 5, 10))

    _assert_refused(response, caplog, run_api, says)
    assert emulator_files() == before


@pytest.mark.parametrize("mode", ["structured", "binary"])
@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("a\x00b.json", "NUL"),  # was a 20 s retry of the claim write, then 500, redelivered for days
        ("a\rb.json", "carriage return"),
        ("a\nb.json", "line feed"),
        (".", "is '.' or '..'"),
        ("..", "is '.' or '..'"),
        (".well-known/acme-challenge/x.json", "which GCS reserves"),
        ("a/../b.json", "'..' path segment"),  # was started: OUTBOX_URI gs://outbox/a/../b/
        ("../../escape.json", "'..' path segment"),  # was started: the emulator wrote data/escape.json/<gen>
        ("../../outbox/stolen.json", "'..' path segment"),  # its claim would land in the outbox bucket's folder
        ("x/..", "'..' path segment"),
        ("\ud800.json", "not valid Unicode"),
        ("é" * 510 + ".json", "is 1025 bytes"),
    ],
)
def test_an_object_name_that_breaks_the_rules_is_acknowledged_and_claims_nothing(
    function, inbox, run_api, caplog, emulator_files, name, says, mode
):
    event = finalized_event(inbox.name, "forged.json", 5, 10)
    event.data["name"] = name  # in the data only: a header (ce-subject) cannot carry a CR or LF
    before = emulator_files()

    response = function.deliver(event, mode)

    line = _assert_refused(response, caplog, run_api, says)
    assert "rename the object" in line["reason"]
    assert _claims(inbox) == []
    assert emulator_files() == before


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("size", "lots", "`size` 'lots' is not a whole number"),  # was started: past MAX_REQUEST_BYTES unchecked
        ("size", "-1", "`size` '-1' is not a whole number"),
        ("size", "1e9", "`size` '1e9' is not a whole number"),
        ("size", 1.5, "`size` 1.5 is not a whole number"),
        ("size", True, "`size` True is not a whole number"),
        ("size", "9" * 20, "is not a whole number"),  # over int64
        ("generation", "²", "`generation` '²' is not an int"),  # '²'.isdigit(), int('²') raised: 500
        ("generation", "9" * 5000, "is not an int"),  # int() refuses 5000 digits: was a 500
        ("generation", "0", "`generation` '0' is not an int above 0"),
        ("generation", None, "`generation` None is not an int"),
        ("name", 7, "must be strings, not str and int"),
        ("bucket", ["inbox"], "must be strings, not list and str"),
    ],
)
def test_a_field_that_is_not_what_gcs_sends_is_acknowledged(
    function, inbox, run_api, caplog, emulator_files, field, value, says
):
    event = finalized_event(inbox.name, "big.json", 5, 10)
    event.data[field] = value
    before = emulator_files()

    response = function.deliver(event)

    _assert_refused(response, caplog, run_api, says)
    assert _claims(inbox) == []
    assert emulator_files() == before


@pytest.mark.parametrize(
    ("body", "framework_alone"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"\x00\xff", 400),
        (json.dumps([1]).encode(), 500),  # JSON, not an object: a TypeError inside the framework
        (json.dumps("text").encode(), 500),
        (json.dumps({**golden_event(), "id": None}).encode(), 500),  # the SDK refuses the attribute
        (json.dumps(golden_event()).encode().replace(b"portrait", b"portr\xffit"), 500),  # not UTF-8
        (json.dumps({"specversion": "1.0", "id": "1"}).encode(), 400),  # no source, no type
    ],
)
def test_a_structured_body_the_framework_cannot_read_is_acknowledged(
    function, run_api, caplog, emulator_files, body, framework_alone
):
    before = emulator_files()

    response = post_body(function.app.test_client(), body)

    line = _assert_refused(response, caplog, run_api, FAILED_BY_FRAMEWORK)
    assert "send a structured-mode JSON object" in line["reason"]
    assert emulator_files() == before


def test_functions_framework_alone_answers_a_body_that_is_not_json_with_a_400_that_eventarc_redelivers(
    tmp_path, monkeypatch
):
    """Why main.py registers `_unreadable`: left to itself, the framework answers before our code runs."""
    source = tmp_path / "main.py"
    source.write_text(
        "import functions_framework\n\n\n@functions_framework.cloud_event\ndef on_event(event):\n"
        "    raise AssertionError('never reached')\n"
    )
    monkeypatch.setenv("FUNCTION_TARGET", "on_event")
    monkeypatch.setenv("FUNCTION_SIGNATURE_TYPE", "cloudevent")
    import functions_framework

    bare = functions_framework.create_app("on_event", str(source), "cloudevent").test_client()

    assert post_body(bare, b"{not json").status_code == 400
    assert post_body(bare, json.dumps([1]).encode()).status_code == 500


def test_binary_mode_data_that_is_not_json_is_acknowledged(function, inbox, run_api, caplog):
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "//storage.googleapis.com/projects/_/buckets/x",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "Content-Type": "application/json",
    }

    response = function.app.test_client().post("/", headers=headers, data=b"{not json")

    _assert_refused(response, caplog, run_api, "data is not JSON")
    assert _claims(inbox) == []


def test_a_corrupt_claim_is_acknowledged_with_its_fix_and_left_as_it_is(function, inbox, run_api, caplog):
    blob = inbox.blob("odd.json")
    blob.upload_from_string(json.dumps(WORKFLOW))
    claim = inbox.blob(f"_claims/odd.json/{blob.generation}")
    claim.upload_from_string(b"[1]")  # a JSON list where a claim object belongs: was an AttributeError, 500

    response = function.deliver(finalized_event(inbox.name, "odd.json", blob.generation, blob.size))

    _assert_refused(response, caplog, run_api, "is not a claim")
    assert "delete it to let the object run" in _lines(caplog, "failed")[0]["reason"]
    assert inbox.get_blob(claim.name).download_as_bytes() == b"[1]"


def test_an_unexpected_exception_is_acknowledged_and_logged_with_its_traceback(
    function, inbox, run_api, caplog, monkeypatch
):
    def a_bug(self, obj):  # a stand-in for a bug in our code: nothing real raises RuntimeError here
        raise RuntimeError("a bug that every redelivery would meet")

    monkeypatch.setattr(sys.modules["main.batches"].BatchSpecs, "task_count", a_bug)
    blob = inbox.blob("nightly.batch.json")
    blob.upload_from_string(b"{}")

    response = function.deliver(finalized_event(inbox.name, blob.name, blob.generation, blob.size))

    line = _assert_refused(response, caplog, run_api, "unexpected RuntimeError: a bug that every redelivery")
    assert "Traceback (most recent call last)" in line["message"] and "a_bug" in line["message"]
    claim = read_claim(inbox, blob.name, blob.generation)
    assert claim is not None
    assert claim["state"] == "failed" and "RuntimeError" in claim["error"]  # a redelivery starts nothing
    assert function.deliver(finalized_event(inbox.name, blob.name, blob.generation, blob.size)).status_code == 200
    assert run_api.runs == []


def test_a_transient_admin_api_failure_still_answers_5xx_and_the_redelivery_starts_it(function, inbox, run_api, caplog):
    blob = inbox.blob("flaky.json")
    blob.upload_from_string(json.dumps(WORKFLOW))
    event = finalized_event(inbox.name, blob.name, blob.generation, blob.size)
    run_api.fail_next(1, status=503)

    failed = function.deliver(event)

    assert failed.status_code == 500  # the framework's own crash answer: Eventarc redelivers
    assert failed.headers.get("X-Google-Status") == "crash"
    assert _lines(caplog, "failed") == []
    assert [line["action"] for line in _lines(caplog, "retry")] == ["retry"]
    claim = read_claim(inbox, "flaky.json", event.data["generation"])
    assert claim is not None and claim["state"] == "released"

    assert function.deliver(event).status_code == 200
    assert len(run_api.executions()) == 1


@pytest.mark.slow
def test_storage_down_answers_5xx_and_starts_nothing(function, inbox, run_api, caplog, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens there

    response = function.deliver(finalized_event(inbox.name, "down.json", 5, 10))

    assert response.status_code == 500  # once the claim read's bounded retry gives up
    assert _lines(caplog, "failed") == []
    [line] = _lines(caplog, "retry")
    assert "transient" in line["message"]
    assert run_api.runs == []


@pytest.fixture
def edge_bucket(gcs: GcsEmulator, gcs_client: Any) -> Any:
    """A bucket whose name is as long as GCS allows without dots: 63 characters."""
    name = f"edge-{secrets.token_hex(4)}-".ljust(63, "b")
    gcs.create_bucket(name)
    return gcs_client.bucket(name)


def _long_name(size: int) -> str:
    """A .json name of exactly `size` bytes, multi-byte characters included, in parts the emulator's disk takes."""
    stem = "é" * 50 + "/"  # 101 bytes: fake-gcs-server stores each part as a file name (255 at most)
    name = stem * ((size - 5) // len(stem.encode()))
    return name + "x" * (size - 5 - len(name.encode())) + ".json"


@pytest.mark.parametrize(
    ("bucket", "name"),
    [
        ("b" * 63, "x.json"),
        ("abc", "x.json"),
        (".".join(["b" * 63] * 3) + "." + "b" * 30, "x.json"),  # 222 characters with dots
        ("in_box-1.example", "a/.../b..c/.json"),  # '...' and 'b..c' are not '..' segments
        ("inbox", _long_name(1024)),
    ],
)
def test_names_at_the_edge_of_gcs_rules_are_accepted(bucket, name):
    obj = parse_storage_object(finalized_event(bucket, name, 5, 10))

    assert (obj.bucket, obj.name, obj.generation, obj.size) == (bucket, name, 5, 10)


def test_the_longest_name_whose_claim_fits_starts_one_execution_in_a_63_character_bucket(
    function, edge_bucket, run_api, caplog
):
    room = 1024 - len("_claims/") - len("/1234567890123456")  # the claim's prefix and a 16-digit generation
    name = _long_name(room)
    blob = edge_bucket.blob(name)
    blob.upload_from_string(json.dumps(WORKFLOW))
    assert len(str(blob.generation)) == 16

    response = function.deliver(finalized_event(edge_bucket.name, name, blob.generation, blob.size))

    assert response.status_code == 200
    assert _lines(caplog, "failed") == []
    [run] = run_api.runs
    env = run["body"]["overrides"]["containerOverrides"][0]["env"]
    assert env[0] == {"name": "REQUEST_URI", "value": f"gs://{edge_bucket.name}/{name}#{blob.generation}"}
    claim = read_claim(edge_bucket, name, blob.generation)
    assert claim is not None and claim["state"] == "started"


def test_a_name_too_long_for_its_claim_is_acknowledged_with_the_room_left(function, inbox, run_api, caplog):
    name = _long_name(1024)  # within GCS's rules, but its claim would be 1024 + 25 bytes

    response = function.deliver(finalized_event(inbox.name, name, 1234567890123456, 10))

    _assert_refused(response, caplog, run_api, "rename the object to at most 999 bytes")
    assert _claims(inbox) == []


def test_a_malformed_event_raises_permanent_error_naming_the_event_not_the_whole_name():
    event = finalized_event("inbox", "a\x00" + "b" * 1000 + ".json", 5, 10, event_id="evt-9")

    with pytest.raises(PermanentError) as caught:
        parse_storage_object(event)

    message = str(caught.value)
    assert message.startswith("event evt-9: object name 'a\\x00bbb")
    assert len(message) < 400
