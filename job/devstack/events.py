"""The CloudEvent Eventarc pushes when a GCS object is finalized, built from the object's resource.

Eventarc's storage trigger sends the object's JSON API resource as the event's data, with the
int64 fields (`generation`, `size`, `metageneration`) as strings, and these attributes:

    ce-specversion 1.0          ce-type    google.cloud.storage.object.v1.finalized
    ce-id          a Pub/Sub message id (digits; a redelivery keeps it)
    ce-source      //storage.googleapis.com/projects/_/buckets/BUCKET
    ce-subject     objects/NAME                ce-time  the object's `updated`
    ce-bucket      BUCKET                      ce-dataschema  (StorageObjectData's JSON schema)
    content-type   application/json

`tests/data/gcs_finalized_event.json` is a delivery of that shape; a test holds the two together.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

FINALIZED = "google.cloud.storage.object.v1.finalized"
DATASCHEMA = (
    "https://googleapis.github.io/google-cloudevents/jsonschema/google/events/cloud/storage/v1/StorageObjectData.json"
)
# The object resource's fields that Eventarc passes on (the emulator's `acl` and links are not among them).
_DATA_FIELDS = (
    "kind", "name", "bucket", "generation", "metageneration", "contentType", "storageClass", "size",
    "md5Hash", "crc32c", "etag", "timeCreated", "updated", "timeStorageClassUpdated", "contentEncoding",
    "contentDisposition", "contentLanguage", "cacheControl", "metadata", "customTime", "componentCount",
    "eventBasedHold", "temporaryHold", "retentionExpirationTime", "kmsKeyName",
)  # fmt: skip
_INT64_FIELDS = ("generation", "metageneration", "size", "componentCount")


def storage_object_data(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The event's data for one object resource (as the GCS JSON API lists it), shaped like GCS's own.

    `id`, `selfLink` and `mediaLink` are rebuilt as Google spells them, since an emulator's point
    at itself; int64 fields become strings whatever type the listing used.
    """
    data = {key: resource[key] for key in _DATA_FIELDS if resource.get(key) is not None}
    for key in _INT64_FIELDS:
        if key in data:
            data[key] = str(data[key])
    data.setdefault("kind", "storage#object")
    bucket, name, generation = str(data["bucket"]), str(data["name"]), str(data["generation"])
    quoted = quote(name, safe="")
    data["id"] = f"{bucket}/{name}/{generation}"
    data["selfLink"] = f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{quoted}"
    data["mediaLink"] = (
        f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{quoted}?generation={generation}&alt=media"
    )
    return data


def finalized_event(resource: Mapping[str, Any], *, event_id: str | None = None) -> CloudEvent:
    """The `object.finalized` event for one object generation; each call a new id unless given one."""
    data = storage_object_data(resource)
    bucket = data["bucket"]
    attributes = {
        "specversion": "1.0",
        "id": event_id or str(10**16 + secrets.randbelow(9 * 10**16)),  # 17 digits, like Pub/Sub's ids
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "type": FINALIZED,
        "subject": f"objects/{data['name']}",
        "time": data.get("updated") or data.get("timeCreated"),
        "datacontenttype": "application/json",
        "dataschema": DATASCHEMA,
        "bucket": bucket,
    }
    return CloudEvent(attributes, data)


def binary_request(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Headers and body of a binary-mode push (attributes as ce-* headers, data as the body)."""
    headers, body = to_binary(event)
    return dict(headers), bytes(body or b"")
