"""The notifier: Eventarc's push, imitated. One binary-mode CloudEvent per object generation, shaped
like the golden delivery in tests/data/, redelivered with the same id while the function answers 5xx."""

from __future__ import annotations

import json
import time

import httpx
from cloudevents.http import from_http

from job.devstack.events import binary_request, finalized_event
from job.devstack.notifier import InboxNotifier
from tests.support.gcs_events import golden_event
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import WebhookReceiver
from trigger.events import FINALIZED, event_type, parse_storage_object
from trigger.objects import StorageObject


def _upload(bucket, name, body=b'{"1": {"class_type": "EmptyImage", "inputs": {}}}'):
    blob = bucket.blob(name)
    blob.upload_from_string(body, content_type="application/json")
    return blob


def test_event_has_the_attributes_and_data_fields_of_an_eventarc_delivery(gcs, inbox):
    blob = _upload(inbox, "requests/portrait one.json")
    with WebhookReceiver() as receiver:
        notifier = InboxNotifier(gcs.url, inbox.name, receiver.url)
        try:
            [event] = notifier.poll_once()
        finally:
            notifier.stop()

    golden = golden_event()
    golden_data = golden.pop("data")
    assert set(event.get_attributes()) == set(golden)
    assert set(golden_data) <= set(event.data)
    assert event["type"] == "google.cloud.storage.object.v1.finalized"
    assert event["source"] == f"//storage.googleapis.com/projects/_/buckets/{inbox.name}"
    assert event["subject"] == "objects/requests/portrait one.json"
    assert event["time"] == event.data["updated"]
    assert event["id"].isdigit()
    assert event.data["generation"] == str(blob.generation)  # int64 fields are strings, as GCS sends them
    assert event.data["size"] == str(blob.size)
    assert event.data["metageneration"] == "1"
    assert event.data["id"] == f"{inbox.name}/requests/portrait one.json/{blob.generation}"
    assert event.data["selfLink"] == (
        f"https://www.googleapis.com/storage/v1/b/{inbox.name}/o/requests%2Fportrait%20one.json"
    )
    assert "acl" not in event.data


def test_push_is_binary_mode_and_parses_back_to_the_same_event(gcs, inbox):
    _upload(inbox, "a.json")
    with WebhookReceiver() as receiver:
        notifier = InboxNotifier(gcs.url, inbox.name, receiver.url)
        try:
            [event] = notifier.poll_once()
            wait_for(lambda: notifier.deliveries, timeout_s=10, what="a delivery")
        finally:
            notifier.stop()
        [push] = receiver.received

    assert push.headers["content-type"] == "application/json"
    assert push.headers["ce-specversion"] == "1.0"
    assert push.headers["ce-id"] == event["id"]
    assert push.headers["ce-subject"] == "objects/a.json"
    assert push.headers["ce-bucket"] == inbox.name
    assert json.loads(push.body) == event.data
    parsed = from_http(push.headers, push.body)
    assert parsed.get_attributes() == event.get_attributes()


def test_each_generation_is_pushed_once_and_an_overwrite_is_pushed_again(gcs, inbox):
    with WebhookReceiver() as receiver:
        notifier = InboxNotifier(gcs.url, inbox.name, receiver.url, interval_s=0.05).start()
        try:
            first = _upload(inbox, "x.json")
            wait_for(lambda: len(notifier.deliveries) == 1, timeout_s=10, what="one delivery")
            time.sleep(0.3)  # several more polls: nothing new
            second = _upload(inbox, "x.json", b'{"changed": true}')
            wait_for(lambda: len(notifier.deliveries) == 2, timeout_s=10, what="a second delivery")
            time.sleep(0.3)
        finally:
            notifier.stop()

    generations = [json.loads(push.body)["generation"] for push in receiver.received]
    assert generations == [str(first.generation), str(second.generation)]


def test_objects_already_in_the_bucket_are_not_announced(gcs, inbox):
    _upload(inbox, "old.json")
    with WebhookReceiver() as receiver:
        notifier = InboxNotifier(gcs.url, inbox.name, receiver.url, interval_s=0.05).start()
        try:
            time.sleep(0.3)
            _upload(inbox, "new.json")
            wait_for(lambda: notifier.deliveries, timeout_s=10, what="a delivery")
        finally:
            notifier.stop()

    assert [json.loads(push.body)["name"] for push in receiver.received] == ["new.json"]


def test_5xx_is_redelivered_with_the_same_event_id_until_accepted(gcs, inbox):
    _upload(inbox, "flaky.json")
    with WebhookReceiver(statuses=[503, 500, 204]) as receiver:
        notifier = InboxNotifier(gcs.url, inbox.name, receiver.url, backoff_s=0.01)
        try:
            [event] = notifier.poll_once()
            wait_for(lambda: notifier.deliveries, timeout_s=10, what="a delivery")
        finally:
            notifier.stop()

    [delivery] = notifier.deliveries
    assert (delivery.ok, delivery.status, delivery.attempts) == (True, 204, 3)
    assert [push.headers["ce-id"] for push in receiver.received] == [event["id"]] * 3


def test_4xx_is_not_redelivered(gcs, inbox):
    _upload(inbox, "refused.json")
    with WebhookReceiver(statuses=[400]) as receiver:
        notifier = InboxNotifier(gcs.url, inbox.name, receiver.url, backoff_s=0.01)
        try:
            notifier.poll_once()
            wait_for(lambda: notifier.deliveries, timeout_s=10, what="a delivery")
        finally:
            notifier.stop()

    assert len(receiver.received) == 1
    assert notifier.deliveries[0].status == 400


def test_the_trigger_reads_the_object_generation_from_the_push(gcs, inbox):
    blob = _upload(inbox, "requests/f.json")
    resource = httpx.get(f"{gcs.url}/storage/v1/b/{inbox.name}/o/requests%2Ff.json").json()  # the JSON API's resource

    headers, body = binary_request(finalized_event(resource))
    pushed = from_http(headers, body)  # what functions-framework hands the function

    assert event_type(pushed) == FINALIZED
    assert parse_storage_object(pushed) == StorageObject(inbox.name, "requests/f.json", blob.generation, blob.size)
