"""A sync /predict with a `webhook` also delivers its response document there, signed, after answering."""

from __future__ import annotations

import base64
import secrets
import time

import pytest
from standardwebhooks import Webhook

from tests.service.conftest import MakeService
from tests.support.comfy import empty_image_workflow
from tests.support.webhook_receiver import Received, WebhookReceiver

pytestmark = pytest.mark.comfyui

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def first_delivery(hook: WebhookReceiver, timeout_s: float = 30) -> Received:
    deadline = time.monotonic() + timeout_s
    while not hook.received:
        assert time.monotonic() < deadline, "no webhook arrived"
        time.sleep(0.02)
    return hook.received[0]


def test_the_webhook_gets_the_same_document_as_the_caller(make_service: MakeService) -> None:
    with WebhookReceiver() as hook, make_service(webhook_secret=SECRET, allow_private_urls=True) as service:
        response = service.predict({"workflow": empty_image_workflow(size=8, color=0x123456), "webhook": hook.url})
        delivered = first_delivery(hook)

    assert response.status_code == 200
    assert Webhook(SECRET).verify(delivered.body, delivered.headers) == response.json()
    assert len(hook.received) == 1


def test_a_failed_request_tells_its_webhook_too(make_service: MakeService) -> None:
    with WebhookReceiver() as hook, make_service(webhook_secret=SECRET, allow_private_urls=True) as service:
        response = service.predict({"workflow": {"1": {"class_type": "NoSuchNode", "inputs": {}}}, "webhook": hook.url})
        delivered = first_delivery(hook)

    assert response.status_code == 400
    document = Webhook(SECRET).verify(delivered.body, delivered.headers)
    assert document["status"] == "error"
    assert document["error"] == response.json()["error"]
