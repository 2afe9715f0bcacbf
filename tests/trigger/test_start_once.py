"""An inbox object generation starts exactly one Cloud Run execution, however often it is delivered."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from job.devstack.run_api import DEFAULT_JOB
from tests.trigger.conftest import read_claim
from trigger.claims import ClaimStore
from trigger.objects import StorageObject


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_finalized_event_starts_one_execution_with_the_request_and_outbox_uris(function, drop, inbox, run_api, mode):
    event = drop("requests/portrait.json")
    generation = event.data["generation"]

    response = function.deliver(event, mode)

    assert response.status_code == 200
    [run] = run_api.runs
    assert run["job"] == DEFAULT_JOB
    assert set(run["body"]) == {"overrides"}
    overrides = run["body"]["overrides"]
    assert set(overrides) == {"containerOverrides"}
    [container] = overrides["containerOverrides"]
    assert set(container) == {"env"}
    assert container["env"] == [
        {"name": "REQUEST_URI", "value": f"gs://{inbox.name}/requests/portrait.json#{generation}"},
        {"name": "OUTBOX_URI", "value": "gs://outbox/requests/portrait/"},
    ]
    [execution] = run_api.executions()
    claim = read_claim(inbox, "requests/portrait.json", generation)
    assert claim is not None
    assert claim["state"] == "started"
    assert claim["execution"] == execution.name
    assert claim["source"] == f"gs://{inbox.name}/requests/portrait.json#{generation}"


def test_outbox_prefix_is_part_of_the_outbox_uri(function, drop, trigger_env, run_api):
    trigger_env.setenv("OUTBOX_BUCKET", "results")
    trigger_env.setenv("OUTBOX_PREFIX", "out")  # normalised to out/

    assert function.deliver(drop("a/b/c.json")).status_code == 200

    env = {e["name"]: e["value"] for e in run_api.runs[0]["body"]["overrides"]["containerOverrides"][0]["env"]}
    assert env["OUTBOX_URI"] == "gs://results/out/a/b/c/"


def test_duplicate_event_starts_one_execution(function, drop, run_api):
    event = drop("dup.json")

    statuses = [function.deliver(event, "binary" if i % 2 else "structured").status_code for i in range(100)]

    assert statuses == [200] * 100
    assert len(run_api.runs) == 1


def test_concurrent_duplicate_events_start_one_execution(function, drop, run_api):
    event = drop("race.json")

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: function.deliver(event).status_code, range(100)))

    assert len(run_api.runs) == 1
    assert statuses == [200] * 100  # duplicates wait (CLAIM_WAIT_S) for the holder to record the start


def test_overwritten_object_starts_a_second_execution(function, drop, inbox, run_api):
    first = drop("again.json")
    second = drop("again.json", b'{"workflow": {}}')
    assert first.data["generation"] != second.data["generation"]

    for event in (first, second, first, second):
        assert function.deliver(event).status_code == 200

    uris = [r["body"]["overrides"]["containerOverrides"][0]["env"][0]["value"] for r in run_api.runs]
    assert uris == [
        f"gs://{inbox.name}/again.json#{first.data['generation']}",
        f"gs://{inbox.name}/again.json#{second.data['generation']}",
    ]


def test_transient_failure_answers_5xx_and_a_redelivery_starts_one_execution(function, drop, inbox, run_api):
    event = drop("flaky.json")
    run_api.fail_next(1, status=503)

    failed = function.deliver(event)

    assert failed.status_code == 500  # Eventarc redelivers on 5xx
    assert len(run_api.runs) == 1 and run_api.executions() == []
    claim = read_claim(inbox, "flaky.json", event.data["generation"])
    assert claim is not None
    assert claim["state"] == "released" and "503" in claim["error"]

    assert function.deliver(event).status_code == 200
    assert function.deliver(event).status_code == 200
    assert len(run_api.runs) == 2
    assert len(run_api.executions()) == 1


def test_unreachable_admin_api_answers_5xx(function, drop, trigger_env, run_api):
    run_api.stop()  # connection refused from here on

    assert function.deliver(drop("nobody-home.json")).status_code == 500


def test_redelivery_after_crash_between_claim_and_run_starts_the_job(function, drop, inbox, gcs_client, run_api):
    event = drop("crashed.json")
    obj = StorageObject(inbox.name, "crashed.json", int(event.data["generation"]))
    # The crashed delivery got as far as claiming, with the same code the function runs; its lease expired.
    crashed = ClaimStore(gcs_client, "_claims/", lease_s=0.01, wait_s=0).acquire(obj, by="crashed delivery")
    assert crashed.claim.state == "claimed"
    time.sleep(0.05)

    assert function.deliver(event).status_code == 200

    assert len(run_api.runs) == 1
    claim = read_claim(inbox, "crashed.json", obj.generation)
    assert claim is not None
    assert claim["state"] == "started" and claim["attempt"] == 2


def test_live_claim_makes_a_duplicate_answer_5xx_until_its_lease_expires(
    function, drop, inbox, gcs_client, trigger_env, run_api
):
    trigger_env.setenv("CLAIM_WAIT_S", "0.2")
    event = drop("held.json")
    obj = StorageObject(inbox.name, "held.json", int(event.data["generation"]))
    ClaimStore(gcs_client, "_claims/", lease_s=1.0, wait_s=0).acquire(obj, by="a slow delivery")

    busy = function.deliver(event)
    assert busy.status_code == 500  # maybe still starting it: retry later rather than start twice
    assert run_api.runs == []

    time.sleep(1.0)
    assert function.deliver(event).status_code == 200
    assert len(run_api.runs) == 1
