"""The Cloud Function (gen2): GCS `object.finalized` on the inbox bucket -> one Cloud Run execution.

Deploy this folder as the function's source with entry point `on_inbox_object`; settings are the
environment variables listed in `config.py`. This module only parses, calls and logs: the work is
`handler.InboxTrigger.handle`. What Eventarc sees:

    TransientError, ConfigurationError ─────────────> 500: Eventarc redelivers (handler.RETRIED)
    anything else, from our code ───────────────────> 200: logged as `failed` with the reason
    a body functions-framework cannot read as a ────> 200: logged as `failed` (`_unreadable`); left
    CloudEvent (not JSON, not an object, bad ids)          to the framework it would be a 400 or 500,
                                                           which Eventarc redelivers for as long as
                                                           it keeps the event

Each outcome is one JSON log line (logs.py) with `action` and `reason`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import BadRequest, HTTPException

from . import logs
from .capacity import AtCapacity, HeldByTask
from .config import load_config
from .errors import ConfigurationError
from .handler import RETRIED, Action, InboxTrigger, Outcome


@functools.cache
def _trigger() -> InboxTrigger:
    """Config and clients, built on the first event of this instance (not at import)."""
    return InboxTrigger.from_config(load_config(os.environ))


@functions_framework.cloud_event
def on_inbox_object(cloud_event: CloudEvent) -> None:
    """Start the job for a workflow dropped into the inbox, at most once per object generation."""
    log = logs.configure()
    token = logs.event_id.set(str(cloud_event.get("id") or ""))
    try:
        try:
            outcome = _trigger().handle(cloud_event)
        except RETRIED as exc:  # transient or misconfigured: answer 5xx so Eventarc redelivers
            level = log.error if isinstance(exc, ConfigurationError) else log.warning
            action = "retry"
            if isinstance(exc, AtCapacity | HeldByTask):  # expected in a burst: the item waits for a draining task
                level, action = log.info, "pending"
            level("will be redelivered: %s", exc, extra={"action": action, "event_type": cloud_event.get("type")})
            raise
        except Exception as exc:  # not known to be transient: a redelivery would meet it again
            outcome = Outcome.failed(exc)
        level = log.error if outcome.action is Action.FAILED else log.info
        level(
            "%s %s%s",
            outcome.action,
            outcome.source or cloud_event.get("subject") or "",
            f": {outcome.reason}" if outcome.reason else "",
            exc_info=outcome.unexpected,
            extra={
                "action": str(outcome.action),
                "source": outcome.source,
                "execution": outcome.execution,
                "reason": outcome.reason or None,
            },
        )
    finally:
        logs.event_id.reset(token)


def _unreadable(exc: Exception) -> Any:
    """Flask's handler for what the view raised: acknowledge a delivery the framework could not read.

    functions-framework parses the body before `on_inbox_object` runs; a body that is not JSON
    (400), JSON that is not an object (TypeError), or attributes it refuses (ValueError) never
    reach us, and its own answer would have Eventarc redeliver a body that cannot change. Our own
    RETRIED errors are raised again, so Flask answers them 500 through the framework's crash
    handler as if none were registered; other HTTP errors (404, 405) pass through.
    """
    if isinstance(exc, RETRIED):
        raise exc
    if isinstance(exc, HTTPException) and not isinstance(exc, BadRequest):
        return exc
    request = flask.request
    detail = (exc.description or "") if isinstance(exc, HTTPException) else f"{type(exc).__name__}: {exc}"
    reason = (
        f"not a CloudEvent functions-framework can read ({detail.splitlines()[0][:200] if detail else 'no detail'}); "
        f"Content-Type {request.content_type!r}, {request.content_length or 0} bytes; send a structured-mode "
        "JSON object with specversion, id, source and type, or a binary-mode event with ce-* headers"
    )
    logs.configure().error("failed: %s", reason, extra={"action": str(Action.FAILED), "reason": reason})
    return "OK", 200


# On the app that loads this file as the function's source (functions-framework names it `main`); the
# job imports the folder as the package `trigger` and serves no function, so it registers nothing.
if __name__ != "trigger.main":
    functions_framework.errorhandler(Exception)(_unreadable)
