"""What the function acknowledges without starting anything, and what it says about it."""

from __future__ import annotations

import json
import logging

import pytest

from tests.support.gcs_events import finalized_event
from tests.trigger.conftest import FORBIDDEN_JOB, read_claim


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO, logger="trigger")


def _outcomes(caplog):
    return [(r.levelname, getattr(r, "action", None), r.getMessage()) for r in caplog.records if r.name == "trigger"]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("photo.png", "not a .json object"),
        ("notes.JSON.txt", "not a .json object"),
        ("_claims/other.json/123", "claims prefix"),
    ],
)
def test_objects_that_are_not_requests_are_acknowledged_without_a_run(
    function, drop, inbox, run_api, caplog, name, says
):
    event = drop(name, b"{}")

    assert function.deliver(event).status_code == 200

    assert run_api.runs == []
    assert read_claim(inbox, name, event.data["generation"]) is None
    [(level, action, message)] = _outcomes(caplog)
    assert (level, action) == ("INFO", "ignored")
    assert says in message


def test_outbox_objects_in_the_inbox_bucket_are_acknowledged_without_a_run(
    function, drop, inbox, trigger_env, run_api, caplog
):
    trigger_env.setenv("OUTBOX_BUCKET", inbox.name)
    trigger_env.setenv("OUTBOX_PREFIX", "outbox/")

    assert function.deliver(drop("outbox/req/result.json")).status_code == 200
    assert function.deliver(drop("req.json")).status_code == 200  # a request beside it still runs

    assert len(run_api.runs) == 1
    env = run_api.runs[0]["body"]["overrides"]["containerOverrides"][0]["env"]
    assert env[1] == {"name": "OUTBOX_URI", "value": f"gs://{inbox.name}/outbox/req/"}
    assert "outbox prefix" in _outcomes(caplog)[0][2]


def test_outbox_bucket_equal_to_inbox_without_a_prefix_is_refused_as_misconfiguration(
    function, drop, inbox, trigger_env, run_api, caplog
):
    trigger_env.setenv("OUTBOX_BUCKET", inbox.name)

    assert function.deliver(drop("req.json")).status_code == 200

    assert run_api.runs == []
    [(level, action, message)] = _outcomes(caplog)
    assert (level, action) == ("ERROR", "failed")
    assert "set OUTBOX_PREFIX" in message


def test_oversized_object_is_acknowledged_with_what_to_do(function, drop, trigger_env, run_api, caplog):
    trigger_env.setenv("MAX_REQUEST_BYTES", "1000")

    assert function.deliver(drop("big.json", json.dumps({"pad": "x" * 2000}).encode())).status_code == 200

    assert run_api.runs == []
    [(_, action, message)] = _outcomes(caplog)
    assert action == "ignored"
    assert "over MAX_REQUEST_BYTES=1000" in message and "by reference" in message


def test_other_storage_event_types_are_acknowledged_without_a_run(function, inbox, run_api, caplog):
    event = finalized_event(inbox.name, "gone.json", 7, 10, event_type="google.cloud.storage.object.v1.deleted")

    assert function.deliver(event).status_code == 200

    assert run_api.runs == []
    assert _outcomes(caplog)[0][1] == "ignored"


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_malformed_event_is_logged_and_acknowledged(function, inbox, run_api, caplog, mode):
    event = finalized_event(inbox.name, "x.json", 1, 10)
    event.data["generation"] = "not-a-number"

    assert function.deliver(event, mode).status_code == 200

    assert run_api.runs == []
    [(level, action, message)] = _outcomes(caplog)
    assert (level, action) == ("ERROR", "failed")
    assert "`generation` 'not-a-number' is not an int" in message


@pytest.mark.parametrize(
    ("job_name", "fix"),
    [
        ("no-such-job", "does not exist: deploy it"),
        (FORBIDDEN_JOB.rsplit("/", 1)[-1], "roles/run.jobsExecutorWithOverrides"),
    ],
)
def test_permanent_run_failure_is_logged_with_its_fix_and_not_retried(
    function, drop, inbox, trigger_env, run_api, caplog, job_name, fix
):
    trigger_env.setenv("JOB_NAME", job_name)
    event = drop("lost.json")

    first = function.deliver(event)
    again = function.deliver(event)  # a redelivery (or duplicate) must not call the API again

    assert (first.status_code, again.status_code) == (200, 200)
    assert len(run_api.runs) == 1 and run_api.executions() == []
    level, action, message = _outcomes(caplog)[0]
    assert (level, action) == ("ERROR", "failed")
    assert fix in message and "drop the object again" in message
    claim = read_claim(inbox, "lost.json", event.data["generation"])
    assert claim is not None
    assert claim["state"] == "failed" and fix in claim["error"]
    assert _outcomes(caplog)[1][1] == "duplicate"


def test_invalid_configuration_answers_5xx_naming_the_variable(function, drop, trigger_env, run_api, caplog):
    trigger_env.setenv("MAX_REQUEST_BYTES", "fifty megabytes")

    response = function.deliver(drop("cfg.json"))

    assert response.status_code == 500  # kept for redelivery once the deployment is fixed
    assert run_api.runs == []
    assert any("MAX_REQUEST_BYTES='fifty megabytes'" in r.getMessage() for r in caplog.records)
