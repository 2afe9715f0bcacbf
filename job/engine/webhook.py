"""Telling a request's webhook about its result: signed per Standard Webhooks, retried, bounded.

The body is the result document as JSON. Headers `webhook-id` (one id per item, the same on every
try, so receivers can drop duplicates), `webhook-timestamp` and `webhook-signature` (v1, HMAC-SHA256
with WEBHOOK_SECRET, `whsec_<base64>`) let the receiver check it with any Standard Webhooks library.

Without WEBHOOK_SECRET nothing is sent: an unsigned result could not be told from a forged one
(it names the output URIs a receiver will fetch), and receivers that accept unsigned posts once
tend to keep doing so. The refusal is recorded in result.json with what to set.

Where a webhook may go is the outbound policy's call (job/engine/outbound.py), as for inputs:
public `https://` hosts only (ALLOW_PRIVATE_URLS allows `http://` and private hosts, for local
tests), checked on every try, and never ComfyUI's own address and port, whatever the setting (its
/interrupt would stop another caller's run). A refused webhook is `not_sent`, with the reason.
Each try has one wall-clock deadline over connect, headers and body, so a receiver that answers a
byte at a time cannot hold a delivery past WEBHOOK_TIMEOUT_S.

Every outcome is a `Delivery` recorded in result.json: nothing here raises.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

from job.engine.outbound import DeadlinePassed, OutboundPolicy, Refused, Unreachable
from job.errors import seconds

if TYPE_CHECKING:
    from job.settings import Settings

log = logging.getLogger(__name__)

_PER_TRY_TIMEOUT_S = 10.0
_ANSWER_BYTES = 1024  # of a refusal's body, kept for the record; the rest is not read
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


@dataclass(frozen=True)
class Notifier:
    """Sends result documents to webhooks with one signing secret, one retry budget and one outbound policy."""

    secret: str | None
    attempts: int = 5
    timeout_s: float = 60.0
    policy: OutboundPolicy = field(default_factory=OutboundPolicy)

    @classmethod
    def configured(cls, settings: Settings) -> Notifier:
        """WEBHOOK_SECRET, WEBHOOK_ATTEMPTS, WEBHOOK_TIMEOUT_S and ALLOW_PRIVATE_URLS; ComfyUI's base URL
        (COMFYUI_URL, or COMFYUI_HOST:COMFYUI_PORT: the address the runner talks to) is never posted to."""
        policy = OutboundPolicy.configured(settings)
        return cls(settings.webhook_secret, settings.webhook_attempts, settings.webhook_timeout_s, policy)

    def send(self, url: str, document: dict[str, Any], *, key: str) -> Delivery:
        """`deliver` with this notifier's settings; `key` names the item, for a stable webhook-id."""
        return deliver(
            url,
            document,
            secret=self.secret,
            msg_id=message_id(key),
            attempts=self.attempts,
            timeout_s=self.timeout_s,
            policy=self.policy,
        )


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
    policy: OutboundPolicy | None = None,
) -> Delivery:
    """POST `document` to `url`, signed, retrying transient failures with backoff until `timeout_s`.

    `policy` says where webhooks may go (the default: public https:// hosts only); a refused URL is
    `not_sent`, and nothing is posted to it.
    """
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
    while outcome.attempts < attempts:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        outcome.attempts += 1
        try_deadline = time.monotonic() + min(_PER_TRY_TIMEOUT_S, remaining)
        retry_after = _try(policy or OutboundPolicy(), url, body, signer, msg_id, try_deadline, outcome)
        if retry_after is None:
            break
        pause = min(max(backoff, retry_after), deadline - time.monotonic())
        if outcome.attempts >= attempts or pause <= 0:
            break
        time.sleep(pause)
        backoff = min(backoff * 2, _MAX_BACKOFF_S)
    if outcome.status == "not_sent":
        log.warning("webhook not sent: %s", outcome.error)
    elif outcome.status == "failed":
        outcome.error = f"{outcome.error} (gave up after {outcome.attempts} attempt(s) within {seconds(timeout_s)})"
        log.warning("webhook %s failed: %s", url, outcome.error)
    else:
        log.info("webhook %s delivered (attempt %d)", url, outcome.attempts)
    return outcome


def _try(
    policy: OutboundPolicy, url: str, body: str, signer: Webhook, msg_id: str, deadline: float, outcome: Delivery
) -> float | None:
    """One POST, checked by `policy` and ended by `deadline`; updates `outcome`. Returns None when done
    (delivered, refused or final), else the least wait before the next try."""
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": "worker-comfyui",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(msg_id, now, body),
    }
    try:
        with policy.open(
            "POST", url, purpose="webhook", deadline=deadline, headers=headers, content=body.encode(), max_redirects=0
        ) as response:
            outcome.http_status = response.status_code
            if response.is_success:
                outcome.status, outcome.error = "delivered", None
                return None
            answer = _first_bytes(response.iter_bytes(), _ANSWER_BYTES).decode(errors="replace")[:200].strip()
    except Refused as exc:  # nothing went out: not a try
        outcome.status, outcome.error, outcome.attempts = "not_sent", exc.message, outcome.attempts - 1
        return None
    except DeadlinePassed:
        outcome.error = "the receiver did not answer within the try's deadline (ReadTimeout)"
        return 0.0
    except Unreachable as exc:
        outcome.error = exc.message
        return 0.0
    outcome.error = f"the receiver answered HTTP {response.status_code}: {answer}".rstrip(": ")
    if response.status_code not in _RETRY_STATUSES:
        return None
    return _retry_after(response.headers.get("retry-after"))


def _first_bytes(parts: Iterable[bytes], limit: int) -> bytes:
    kept = b""
    for part in parts:
        kept += part
        if len(kept) >= limit:
            break
    return kept[:limit]


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
