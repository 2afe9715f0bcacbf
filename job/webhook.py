"""Telling a request's webhook about its result: signed per Standard Webhooks, retried, bounded.

The body is the result document as JSON. Headers `webhook-id` (one id per item, the same on every
try, so receivers can drop duplicates), `webhook-timestamp` and `webhook-signature` (v1, HMAC-SHA256
with WEBHOOK_SECRET, `whsec_<base64>`) let the receiver check it with any Standard Webhooks library.

Without WEBHOOK_SECRET nothing is sent: an unsigned result could not be told from a forged one
(it names the output URIs a receiver will fetch), and receivers that accept unsigned posts once
tend to keep doing so. The refusal is recorded in result.json with what to set.

Every outcome is a `Delivery` recorded in result.json: nothing here raises.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

log = logging.getLogger(__name__)

_PER_TRY_TIMEOUT_S = 10.0
_FIRST_BACKOFF_S = 1.0
_MAX_BACKOFF_S = 16.0
# Statuses that may succeed on a later try; any other non-2xx answer is final.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class Delivery:
    """What became of one webhook: `delivered`, `failed` or `not_sent`, after `attempts` tries."""

    url: str
    status: str
    attempts: int = 0
    http_status: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"url": self.url, "status": self.status, "attempts": self.attempts}
        if self.http_status is not None:
            entry["http_status"] = self.http_status
        if self.error:
            entry["error"] = self.error
        return entry


def message_id(source: str) -> str:
    """A webhook-id stable across retries of the same item, so receivers can deduplicate."""
    return "msg_" + hashlib.sha256(source.encode()).hexdigest()[:32]


def deliver(
    url: str,
    document: dict[str, Any],
    *,
    secret: str | None,
    msg_id: str,
    attempts: int = 5,
    timeout_s: float = 60.0,
    transport: httpx.BaseTransport | None = None,
) -> Delivery:
    """POST `document` to `url`, signed, retrying transient failures with backoff until `timeout_s`."""
    refusal = _refusal(url, secret)
    if refusal:
        log.warning("webhook not sent: %s", refusal)
        return Delivery(url=url, status="not_sent", error=refusal)
    assert secret is not None
    signer = Webhook(secret)
    body = json.dumps(document, separators=(",", ":"), default=str)
    deadline = time.monotonic() + timeout_s
    outcome = Delivery(url=url, status="failed")
    backoff = _FIRST_BACKOFF_S
    with httpx.Client(transport=transport, follow_redirects=False) as client:
        while outcome.attempts < attempts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            outcome.attempts += 1
            retry_after = _try(client, url, body, signer, msg_id, min(_PER_TRY_TIMEOUT_S, remaining), outcome)
            if retry_after is None:
                break
            pause = min(max(backoff, retry_after), deadline - time.monotonic())
            if outcome.attempts >= attempts or pause <= 0:
                break
            time.sleep(pause)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)
    if outcome.status == "failed":
        outcome.error = f"{outcome.error} (gave up after {outcome.attempts} attempt(s) within {timeout_s:g} s)"
        log.warning("webhook %s failed: %s", url, outcome.error)
    else:
        log.info("webhook %s delivered (attempt %d)", url, outcome.attempts)
    return outcome


def _try(
    client: httpx.Client, url: str, body: str, signer: Webhook, msg_id: str, timeout_s: float, outcome: Delivery
) -> float | None:
    """One POST; updates `outcome`. Returns None when done (delivered or final), else the least wait."""
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": "worker-comfyui",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(msg_id, now, body),
    }
    try:
        response = client.post(url, content=body.encode(), headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        return 0.0
    outcome.http_status = response.status_code
    if response.is_success:
        outcome.status, outcome.error = "delivered", None
        return None
    outcome.error = f"the receiver answered HTTP {response.status_code}: {response.text[:200].strip()}".rstrip(": ")
    if response.status_code not in _RETRY_STATUSES:
        return None
    return _retry_after(response.headers.get("retry-after"))


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 0), 0.0), _MAX_BACKOFF_S)
    except ValueError:
        return 0.0


def _refusal(url: str, secret: str | None) -> str | None:
    """Why this webhook must not be sent (None when it may)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return f"webhook {url!r} is not an http(s) URL; give an https://... address in `webhook`"
    if not secret:
        return (
            "WEBHOOK_SECRET is not set, and results are never sent unsigned; set WEBHOOK_SECRET=whsec_<base64 key> "
            "on the job (the receiver verifies with the same secret)"
        )
    try:
        Webhook(secret)
    except (binascii.Error, ValueError, EmptyWebhookSecretError, RuntimeError):
        return "WEBHOOK_SECRET is not a Standard Webhooks secret; use whsec_ followed by a base64 key"
    return None
