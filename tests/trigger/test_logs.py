"""Log lines Cloud Logging reads as structured entries."""

from __future__ import annotations

import json
import logging

from trigger import logs


def test_log_line_is_one_json_object_with_severity_event_id_and_outcome():
    record = logging.LogRecord("trigger", logging.ERROR, __file__, 1, "failed %s", ("gs://i/a.json#1",), None)
    record.action = "failed"
    record.source = "gs://i/a.json#1"
    token = logs.event_id.set("evt-7")
    try:
        line = logs.JsonFormatter().format(record)
    finally:
        logs.event_id.reset(token)

    assert "\n" not in line
    assert json.loads(line) == {
        "severity": "ERROR",
        "message": "failed gs://i/a.json#1",
        "logger": "trigger",
        "event_id": "evt-7",
        "action": "failed",
        "source": "gs://i/a.json#1",
    }


def test_configure_is_idempotent():
    logger = logs.configure()
    handlers = list(logger.handlers)

    assert logs.configure() is logger
    assert logger.handlers == handlers
    assert sum(isinstance(h.formatter, logs.JsonFormatter) for h in handlers) == 1
