"""Reading a GCS `object.finalized` CloudEvent, and deciding whether the object is a request.

Eventarc delivers the storage object's JSON resource as the event data; `generation` and `size`
arrive as strings (int64 in JSON). Binary and structured deliveries both reach us as a
`cloudevents` CloudEvent whose data is a dict, or bytes/str when the content type was not JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from .config import TriggerConfig
from .errors import PermanentError

FINALIZED = "google.cloud.storage.object.v1.finalized"


class CloudEventLike(Protocol):
    """The part of `cloudevents.http.CloudEvent` we use."""

    data: Any

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass(frozen=True)
class StorageObject:
    """One generation of one inbox object."""

    bucket: str
    name: str
    generation: int
    size: int | None = None

    @property
    def uri(self) -> str:
        """`gs://bucket/name#generation`: the job's REQUEST_URI and the result's `source`."""
        return f"gs://{self.bucket}/{self.name}#{self.generation}"

    def outbox_uri(self, config: TriggerConfig) -> str:
        """Where the job writes this object's outputs: the contract's section 4 layout."""
        stem = self.name.removesuffix(".json")
        return f"gs://{config.outbox_bucket}/{config.outbox_prefix}{stem}/"


def event_type(event: CloudEventLike) -> str:
    return str(event.get("type") or "")


def parse_storage_object(event: CloudEventLike) -> StorageObject:
    """The object an `object.finalized` event names; a malformed event is a PermanentError."""
    data = event.data
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise PermanentError(f"event {event.get('id')}: data is not JSON: {data[:200]!r}") from None
    if not isinstance(data, dict):
        raise PermanentError(f"event {event.get('id')}: data is {type(data).__name__}, not a storage object")
    bucket, name = data.get("bucket"), data.get("name")
    if not bucket or not name:
        raise PermanentError(f"event {event.get('id')}: data lacks `bucket` or `name`: {sorted(data)}")
    generation = _as_int(data.get("generation"))
    if generation is None:
        raise PermanentError(f"event {event.get('id')}: `generation` {data.get('generation')!r} is not an int")
    return StorageObject(bucket=str(bucket), name=str(name), generation=generation, size=_as_int(data.get("size")))


def why_ignored(obj: StorageObject, config: TriggerConfig) -> str | None:
    """Why this object is not a request (None when it is one): the log line says what to do."""
    if obj.name.startswith(config.claims_prefix):
        return f"under the claims prefix {config.claims_prefix!r} (the trigger's own bookkeeping)"
    if obj.bucket == config.outbox_bucket and obj.name.startswith(config.outbox_prefix):
        if not config.outbox_prefix:
            raise PermanentError(
                f"OUTBOX_BUCKET={obj.bucket!r} is the inbox bucket and OUTBOX_PREFIX is empty, so every "
                "result would look like a request; set OUTBOX_PREFIX (e.g. outbox/) or use another bucket"
            )
        return f"under the outbox prefix {config.outbox_prefix!r} (a result, not a request)"
    if not obj.name.endswith(".json"):
        return "not a .json object; drop workflow requests as <name>.json"
    if obj.size is not None and obj.size > config.max_request_bytes:
        return (
            f"{obj.size} bytes is over MAX_REQUEST_BYTES={config.max_request_bytes}; pass large inputs by "
            "reference in `inputs` (gs:// or https:// URIs) instead of inline base64, or raise MAX_REQUEST_BYTES"
        )
    return None


def _as_int(value: object) -> int | None:
    """GCS sends int64 fields as strings; accept both, refuse anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
