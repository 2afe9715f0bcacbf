"""Reading a GCS `object.finalized` CloudEvent: the storage object it names (objects.py says whether
that object is a request).

Eventarc delivers the storage object's JSON resource as the event data; `generation` and `size`
arrive as strings (int64 in JSON). Binary and structured deliveries both reach us as a
`cloudevents` CloudEvent whose data is a dict, or bytes/str when the content type was not JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from .errors import PermanentError
from .objects import StorageObject, name_problem

FINALIZED = "google.cloud.storage.object.v1.finalized"
_INT64 = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses


class CloudEventLike(Protocol):
    """The part of `cloudevents.http.CloudEvent` we use."""

    data: Any

    def get(self, key: str, default: Any = None) -> Any: ...


def event_type(event: CloudEventLike) -> str:
    return str(event.get("type") or "")


def parse_storage_object(event: CloudEventLike) -> StorageObject:
    """The object an `object.finalized` event names; a malformed event is a PermanentError.

    Everything is checked before any call: `bucket` and `name` against the naming rules
    (objects.name_problem), `generation` a positive int64, `size` an int64 when present, since a
    size that is not one would slip past MAX_REQUEST_BYTES.
    """
    data = event.data
    where = f"event {str(event.get('id'))[:80]}"
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise PermanentError(f"{where}: data is not JSON: {data[:200]!r}") from None
    if not isinstance(data, dict):
        raise PermanentError(f"{where}: data is {type(data).__name__}, not a storage object")
    bucket, name = data.get("bucket"), data.get("name")
    if not bucket or not name:
        raise PermanentError(f"{where}: data lacks `bucket` or `name`: {sorted(map(str, data))[:20]}")
    if not isinstance(bucket, str) or not isinstance(name, str):
        raise PermanentError(f"{where}: `bucket` and `name` must be strings, not {_kinds(bucket, name)}")
    if problem := name_problem(bucket, name):
        raise PermanentError(f"{where}: {problem}")
    generation = _as_int(data.get("generation"))
    if generation is None or generation <= 0:
        raise PermanentError(f"{where}: `generation` {_shown(data.get('generation'))} is not an int above 0")
    size = data.get("size")
    if size is not None and _as_int(size) is None:
        raise PermanentError(f"{where}: `size` {_shown(size)} is not a whole number of bytes")
    return StorageObject(bucket=bucket, name=name, generation=generation, size=_as_int(size))


def _as_int(value: object) -> int | None:
    """GCS sends int64 fields as strings of ASCII digits; accept those and ints, refuse anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _INT64.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and 0 <= value < 2**63:
        return value
    return None


def _kinds(*values: object) -> str:
    return " and ".join(type(value).__name__ for value in values)


def _shown(value: object, limit: int = 80) -> str:
    """A value from the event as a message may quote it: repr, cut to `limit`."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."
