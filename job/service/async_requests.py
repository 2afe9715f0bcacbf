"""Async requests: written to the inbox, run by the job, read back from the outbox.

An async request must outlive this instance (Cloud Run scales the service to zero), so it rides
the event pipeline: the request document goes to `gs://INBOX/async/<id>.json`, the trigger starts
the job, and the job writes `gs://OUTBOX/[OUTBOX_PREFIX]async/<id>/status.json` while it runs and
`result.json` when done (docs/api.md section 6). GET /status/{id} reads those three objects, newest state first.

The inbox object is the parsed request in full, `extra_data` included: the job needs it to run the
request (it is the caller's secret, so it goes nowhere else). A cancel leaves `cancel.json` beside
status.json, which the job's item looks for (job/items/cancel.py).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from job.engine.request import WorkflowRequest
from job.errors import InputNotFound, InvalidRequest
from job.items.outbox import CANCEL, RESULT, STATUS, utc_now
from job.settings import Settings
from job.storage import Storages
from trigger.objects import InboxLayout

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_ID = re.compile(ID_PATTERN)
PREFIX = "async"


class AsyncRequests:
    """Submits async requests and reports on them."""

    def __init__(self, settings: Settings, storages: Storages) -> None:
        self.inbox = settings.inbox_bucket
        self.outbox = settings.outbox_bucket
        self.layout = InboxLayout(settings.outbox_bucket, settings.outbox_prefix)
        self.storages = storages

    def request_uri(self, request_id: str) -> str:
        return f"gs://{self.inbox}/{PREFIX}/{check_id(request_id)}.json"

    def outbox_uri(self, request_id: str, name: str) -> str:
        return self.layout.outbox_folder(f"{PREFIX}/{check_id(request_id)}.json") + name

    def submit(self, request: WorkflowRequest) -> str:
        """Write the request to the inbox (which starts the job) and return its new id."""
        request_id = uuid.uuid4().hex
        doc = request.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"async_"})
        self.storages.write(self.request_uri(request_id), json.dumps(doc).encode(), "application/json")
        return request_id

    def cancel(self, request_id: str) -> dict[str, Any]:
        """Ask the job to stop the request (cancel.json); its status() as it stands then.

        A finished request is left as it is; InputNotFound for unknown ids."""
        status = self.status(request_id)
        if status["status"] in ("queued", "running"):
            marker = json.dumps({"cancelled_at": utc_now()}).encode()
            self.storages.write(self.outbox_uri(request_id, CANCEL), marker, "application/json")
        return status

    def cancel_requested(self, request_id: str) -> bool:
        """Whether a cancel was asked for (the job may not have seen it yet)."""
        return self.storages.generation(self.outbox_uri(request_id, CANCEL)) is not None

    def status(self, request_id: str) -> dict[str, Any]:
        """queued, running (+progress), success or error (+the result); InputNotFound for unknown ids."""
        result = self._read_json(self.outbox_uri(request_id, RESULT))
        if result is not None:
            status = "success" if result.get("status") == "success" else "error"
            return {"id": request_id, "status": status, "result": result, "error": result.get("error")}
        progress = self._read_json(self.outbox_uri(request_id, STATUS))
        if progress is not None:
            return {
                "id": request_id,
                "status": "running",
                "state": progress.get("state"),
                "progress": progress.get("progress"),
            }
        if self.storages.generation(self.request_uri(request_id)) is None:
            raise InputNotFound(f"no async request has the id {request_id!r}")
        return {"id": request_id, "status": "queued"}

    def _read_json(self, uri: str) -> dict[str, Any] | None:
        try:
            raw = self.storages.read(uri)
        except InputNotFound:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None  # a half-written or foreign object: not a state we can report
        return doc if isinstance(doc, dict) else None


def check_id(request_id: str) -> str:
    """An id safe to put in an object name: letters, digits, `-` and `_` only."""
    if not _ID.match(request_id):
        raise InvalidRequest(f"{request_id!r} is not a request id; ids are letters, digits, '-' and '_' only")
    return request_id
