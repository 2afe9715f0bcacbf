"""Webhook delivery against a real loopback receiver: signed so standardwebhooks verifies it, retried
on transient answers, given up on permanent ones and on its deadline, and never sent unsigned."""

from __future__ import annotations

import base64
import secrets
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from job.devstack.gcs_emulator import free_port
from job.engine.outbound import OutboundPolicy
from job.engine.webhook import deliver, message_id
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
RESULT = {"status": "success", "source": "gs://inbox/a.json#1", "images": [{"uri": "gs://outbox/a/x.png"}]}

# The receivers listen on loopback, which only the private-URL setting lets a webhook reach.
LOOPBACK = OutboundPolicy(allow_private=True)


def test_delivery_is_signed_so_the_receiver_can_verify_it():
    with WebhookReceiver() as hook:
        outcome = deliver(hook.url, RESULT, secret=SECRET, msg_id=message_id("gs://inbox/a.json#1"), policy=LOOPBACK)

    assert outcome.as_dict() == {"url": hook.url, "status": "delivered", "attempts": 1, "http_status": 200}
    [received] = hook.received
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == message_id("gs://inbox/a.json#1")
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60
    assert Webhook(SECRET).verify(received.body, received.headers) == RESULT
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(received.body, received.headers)


@pytest.mark.slow
def test_transient_answers_are_retried_and_each_try_is_signed_afresh():
    with WebhookReceiver(statuses=[500, 429, 200]) as hook:
        outcome = deliver(hook.url, RESULT, secret=SECRET, msg_id="msg_1", attempts=5, timeout_s=30, policy=LOOPBACK)

    assert (outcome.status, outcome.attempts, outcome.http_status) == ("delivered", 3, 200)
    assert len({r.headers["webhook-id"] for r in hook.received}) == 1
    for received in hook.received:
        Webhook(SECRET).verify(received.body, received.headers)


def test_permanent_refusal_is_not_retried_and_is_recorded():
    with WebhookReceiver(statuses=[410]) as hook:
        outcome = deliver(hook.url, RESULT, secret=SECRET, msg_id="msg_1", attempts=5, policy=LOOPBACK)

    assert (outcome.status, outcome.attempts, outcome.http_status) == ("failed", 1, 410)
    assert "HTTP 410" in str(outcome.error)
    assert len(hook.received) == 1


@pytest.mark.slow
def test_unreachable_receiver_gives_up_within_the_bounds():
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    started = time.monotonic()

    outcome = deliver(url, RESULT, secret=SECRET, msg_id="msg_1", attempts=3, timeout_s=20, policy=LOOPBACK)

    assert (outcome.status, outcome.attempts) == ("failed", 3)
    assert "ConnectError" in str(outcome.error)
    assert "gave up after 3 attempt(s)" in str(outcome.error)
    assert time.monotonic() - started < 5, "backoff 1 s then 2 s between three quick failures"


@pytest.mark.slow
def test_deadline_bounds_the_whole_delivery():
    with WebhookReceiver(statuses=[503]) as hook:
        started = time.monotonic()
        outcome = deliver(hook.url, RESULT, secret=SECRET, msg_id="msg_1", attempts=20, timeout_s=2.5, policy=LOOPBACK)

    assert outcome.status == "failed"
    assert time.monotonic() - started < 4
    assert outcome.attempts == len(hook.received) == 2  # at 0 s and 1 s; the 3 s try is past the deadline


@pytest.mark.parametrize(
    ("url", "secret", "says"),
    [
        ("https://example.com/hook", None, "WEBHOOK_SECRET is not set"),
        ("https://example.com/hook", "not-base64-$$", "whsec_ followed by a base64 key"),
        ("ftp://example.com/hook", SECRET, "not an http(s) URL"),
    ],
    ids=["no-secret", "bad-secret", "bad-url"],
)
def test_webhook_that_cannot_be_signed_or_sent_is_refused_with_the_fix(url, secret, says):
    outcome = deliver(url, RESULT, secret=secret, msg_id="msg_1", policy=LOOPBACK)

    assert (outcome.status, outcome.attempts) == ("not_sent", 0)
    assert says in str(outcome.error)
