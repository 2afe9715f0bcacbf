"""Sending a workflow through the inbox and reading its answer back: what `worker-comfyui submit` does.

    build the request document (inline images as base64) ──> upload gs://INBOX/<prefix><name>.json
    follow gs://OUTBOX/<prefix><name>/status.json ──> result.json (for *this* generation) ──> download

The outbox folder is derived as the trigger derives it (docs/api.md section 7), and only a
status.json or result.json whose `source` names the uploaded generation counts: an earlier upload
under the same name leaves its own there until this one replaces it.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from job import errors
from job.engine.documents import as_document, parse_json
from job.engine.media import check_input_name, check_media
from job.engine.request import parse_request
from job.errors import InvalidInput, WorkerError, seconds
from job.items.inbox import ItemSource
from job.storage.gcs import gcs_errors
from trigger.objects import InboxLayout, folder_prefix

if TYPE_CHECKING:
    import google.cloud.storage as storage

StatusCallback = Callable[[dict[str, Any]], None]


def build_request(workflow_path: Path, images: Mapping[str, bytes]) -> dict[str, Any]:
    """The request document for a workflow file (bare or a full request) plus inline images, validated."""
    try:
        raw = workflow_path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read workflow {workflow_path}: {exc.strerror}") from None
    doc = dict(as_document(parse_json(raw)))  # a bare workflow, RunPod's or ComfyUI's body: ours
    parse_request(doc)  # refuses UI format, a non-workflow, bad fields: with the fix in the message
    inline = [entry for entry in doc.get("images", []) if entry.get("name") not in images]
    for name, data in images.items():
        check_input_name(name)
        check_media(name, data)
        inline.append({"name": name, "image": base64.b64encode(data).decode("ascii")})
    if inline:
        doc["images"] = inline
    parse_request(doc)
    return dict(doc)


def object_name(prefix: str, workflow_path: Path, now: datetime | None = None) -> str:
    """`prefix` itself when it ends in .json, else a fresh `<prefix><stem>-<UTC time>-<random>.json`."""
    if prefix.endswith(".json"):
        return prefix
    prefix = folder_prefix(prefix)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    stem = workflow_path.name.removesuffix(".json")
    return f"{prefix}{stem}-{stamp}-{secrets.token_hex(2)}.json"


@dataclass(frozen=True)
class Submitted:
    """One uploaded request: its object generation and the outbox folder its results go to."""

    inbox_bucket: str
    name: str
    generation: int
    outbox_bucket: str
    outbox_prefix: str  # inside outbox_bucket: "<OUTBOX_PREFIX><name without .json>/"

    @property
    def inbox_uri(self) -> str:
        """`gs://INBOX/name#generation`, as result.json's `source` records it."""
        return f"gs://{self.inbox_bucket}/{self.name}#{self.generation}"

    @property
    def outbox_uri(self) -> str:
        return f"gs://{self.outbox_bucket}/{self.outbox_prefix}"


def upload(
    client: storage.Client,
    doc: Mapping[str, Any],
    *,
    inbox_bucket: str,
    name: str,
    outbox_bucket: str,
    outbox_prefix: str = "",
) -> Submitted:
    """Upload the request document; its new generation is what the trigger will run."""
    blob = client.bucket(inbox_bucket).blob(name)
    with gcs_errors(f"gs://{inbox_bucket}/{name}"):
        blob.upload_from_string(json.dumps(doc).encode(), content_type="application/json")
    # Where the trigger will send the job (docs/api.md section 7).
    outbox = InboxLayout(outbox_bucket, outbox_prefix).outbox_path(name)
    return Submitted(inbox_bucket, name, int(blob.generation), outbox_bucket, outbox)


class OutboxWatch:
    """Reads one submission's status.json and result.json, ignoring those of other generations."""

    def __init__(self, client: storage.Client, submitted: Submitted) -> None:
        self.client = client
        self.submitted = submitted
        self._source = ItemSource.parse(submitted.inbox_uri)

    def status(self) -> dict[str, Any] | None:
        return self._read("status.json")

    def result(self) -> dict[str, Any] | None:
        return self._read("result.json")

    def wait(
        self,
        *,
        timeout_s: float,
        poll_s: float = 0.3,
        on_status: StatusCallback | None = None,
        check: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until result.json for this generation appears; TimeoutError after `timeout_s`.

        `check` runs on every poll: a caller that hosts the pipeline raises from it when a part died.
        """
        deadline = time.monotonic() + timeout_s
        last_status: dict[str, Any] | None = None
        while True:
            if check is not None:
                check()
            result = self.result()
            if result is not None:
                return result
            status = self.status()
            if status is not None and status != last_status and on_status is not None:
                on_status(status)
            last_status = status or last_status
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no result in {self.submitted.outbox_uri} after {seconds(timeout_s)}"
                    + (f" (last state: {last_status.get('state')})" if last_status else " (the job never started)")
                )
            time.sleep(poll_s)

    def _read(self, relpath: str) -> dict[str, Any] | None:
        uri = self.submitted.outbox_uri + relpath
        blob = self.client.bucket(self.submitted.outbox_bucket).blob(self.submitted.outbox_prefix + relpath)
        with gcs_errors(uri):
            try:
                doc = json.loads(blob.download_as_bytes())
            except gexc.NotFound:
                return None
            except ValueError:
                return None  # caught mid-write by a store without atomic replace; read it next time
        if not isinstance(doc, dict) or not isinstance(doc.get("source"), str):
            return None
        try:
            same = self._source.same_item(ItemSource.parse(doc["source"]))
        except WorkerError:
            return None
        return doc if same else None


def output_uris(result: Mapping[str, Any]) -> list[str]:
    """Every output URI a result.json lists, images first."""
    entries = [*(result.get("images") or []), *(result.get("files") or [])]
    return [str(entry["uri"]) for entry in entries if isinstance(entry, dict) and entry.get("uri")]


def download_outputs(
    client: storage.Client, result: Mapping[str, Any], submitted: Submitted, out_dir: Path
) -> list[Path]:
    """Download each output of the result into `out_dir`, keeping its path inside the outbox folder."""
    paths = []
    for uri in output_uris(result):
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        relpath = name.removeprefix(submitted.outbox_prefix) if bucket == submitted.outbox_bucket else name
        parts = [part for part in PurePosixPath(relpath).parts if part not in ("", ".", "..", "/")]
        path = out_dir.joinpath(*parts) if parts else out_dir / "output"
        with gcs_errors(uri):
            data = client.bucket(bucket).blob(name).download_as_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def error_from_result(result: Mapping[str, Any]) -> WorkerError:
    """The WorkerError a failed result.json describes, as the class its `type` names."""
    raw = result.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    error_type = str(error.get("type") or "worker_error")
    details = {key: value for key, value in error.items() if key not in ("type", "message", "node_errors")}
    cls: type[WorkerError] = _error_classes().get(error_type) or type(
        "ReportedError", (WorkerError,), {"error_type": error_type}
    )
    message = str(error.get("message") or "the job failed without saying why")
    return cls(message, node_errors=error.get("node_errors"), **details)


def _error_classes() -> dict[str, type[WorkerError]]:
    found: dict[str, type[WorkerError]] = {}
    pending: list[type[WorkerError]] = [errors.WorkerError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.error_type, cls)
        pending.extend(cls.__subclasses__())
    return found
