"""GCS `object.finalized` CloudEvents as Eventarc delivers them, built from the golden event.

`tests/data/gcs_finalized_event.json` is a structured-mode delivery copied in shape from a real
Eventarc storage event (`generation` and `size` are strings). `finalized_event` swaps in the
object's bucket, name, generation and size; `post_event` sends it in binary or structured mode.
"""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "gcs_finalized_event.json"
Mode = Literal["binary", "structured"]


def golden_event() -> dict[str, Any]:
    """The golden delivery as JSON (attributes plus `data`)."""
    loaded: dict[str, Any] = json.loads(GOLDEN.read_text())
    return loaded


def finalized_event(
    bucket: str,
    name: str,
    generation: int,
    size: int,
    *,
    event_type: str = "google.cloud.storage.object.v1.finalized",
    event_id: str | None = None,
) -> CloudEvent:
    """The event Eventarc sends when `gs://bucket/name` reaches `generation` (each call a new id)."""
    golden = golden_event()
    data = copy.deepcopy(golden.pop("data"))
    quoted = quote(name, safe="")
    data.update(
        name=name,
        bucket=bucket,
        generation=str(generation),
        size=str(size),
        id=f"{bucket}/{name}/{generation}",
        selfLink=f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{quoted}",
        mediaLink=f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{quoted}?generation={generation}&alt=media",
    )
    golden.update(
        id=event_id or str(secrets.randbelow(10**17)),
        type=event_type,
        source=f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        subject=f"objects/{name}",
        bucket=bucket,
    )
    return CloudEvent(golden, data)


def post_event(client: Any, event: CloudEvent, mode: Mode = "structured") -> Any:
    """POST the event to a functions-framework test client, as Eventarc's push would."""
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return client.post("/", headers=headers, data=body)


def post_body(client: Any, body: bytes, content_type: str = "application/cloudevents+json") -> Any:
    """POST raw bytes, as a broken or hostile sender would: no CloudEvent encoder in between."""
    return client.post("/", headers={"Content-Type": content_type}, data=body)
