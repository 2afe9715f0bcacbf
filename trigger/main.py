"""The Cloud Function (gen2): GCS `object.finalized` on the inbox bucket -> one Cloud Run execution.

Deploy this folder as the function's source with entry point `on_inbox_object`; settings are the
environment variables listed in `config.py`. This module only parses, calls and logs: the work is
`handler.InboxTrigger.handle`. A TransientError propagates, so functions-framework answers 500 and
Eventarc redelivers; everything else is acknowledged with 200.
"""

from __future__ import annotations

import functools
import os

import functions_framework
from cloudevents.http import CloudEvent

from . import logs
from .capacity import AtCapacity, HeldByTask
from .config import load_config
from .errors import ConfigurationError, TriggerError
from .handler import Action, InboxTrigger


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
        except TriggerError as exc:  # transient or misconfigured: answer 5xx so Eventarc redelivers
            level = log.error if isinstance(exc, ConfigurationError) else log.warning
            action = "retry"
            if isinstance(exc, AtCapacity | HeldByTask):  # expected in a burst: the item waits for a draining task
                level, action = log.info, "pending"
            level("will be redelivered: %s", exc, extra={"action": action, "event_type": cloud_event.get("type")})
            raise
        level = log.error if outcome.action is Action.FAILED else log.info
        level(
            "%s %s%s",
            outcome.action,
            outcome.source or cloud_event.get("subject") or "",
            f": {outcome.reason}" if outcome.reason else "",
            extra={"action": str(outcome.action), "source": outcome.source, "execution": outcome.execution},
        )
    finally:
        logs.event_id.reset(token)
