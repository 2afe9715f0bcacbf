"""The storage seam holds: outside job/storage/ nothing builds a GCS client or reaches past Storages."""

from __future__ import annotations

import re
from pathlib import Path

JOB = Path(__file__).resolve().parents[2] / "job"
ALLOWED = ("storage", "devstack")  # the seam itself; the emulator, which builds its own client

LEAKS = {
    r"storage\.Client\(": "build the client with job.storage.gcs.gcs_client(project)",
    r"\.gcs\.client": "use a Storages method, or Storages.gcs_client where trigger/ code needs the raw client",
    r"storages\.gcs\b": "call the Storages method itself: it picks the backend by URI",
    r"storages\.local\b": "call the Storages method itself: it picks the backend by URI",
}


def test_nothing_outside_the_storage_package_reaches_past_it() -> None:
    found = []
    for path in sorted(JOB.rglob("*.py")):
        relative = path.relative_to(JOB)
        if relative.parts[0] in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fixes = [fix for pattern, fix in LEAKS.items() if re.search(pattern, line)]
            if fixes:
                found.append(f"job/{relative.as_posix()}:{number}: {line.strip()}  ({fixes[0]})")
    assert not found, "storage calls that go around job.storage:\n" + "\n".join(found)
