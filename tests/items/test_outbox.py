"""The outbox's rules without ComfyUI: request URIs parsed (names with '#' too), output paths kept
inside the folder, status.json throttled, and result.json never overwritten by an older generation."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from job.errors import ConfigurationError
from job.items.inbox import ItemSource
from job.items.outbox import Outbox, StatusWriter, _safe_relpath
from job.storage import Storages
from tests.items.conftest import PROJECT
from trigger.objects import InboxLayout


@pytest.mark.parametrize(
    ("uri", "bucket", "name", "generation"),
    [
        ("gs://inbox/a/b.json#1742289693518734", "inbox", "a/b.json", 1742289693518734),
        ("gs://inbox/odd#name.json#12", "inbox", "odd#name.json", 12),
        ("gs://inbox/odd#name.json", "inbox", "odd#name.json", None),
        ("gs://inbox/plain.json", "inbox", "plain.json", None),
        ("/tmp/wf.json", None, "/tmp/wf.json", None),
    ],
)
def test_request_uri_names_bucket_object_and_generation(uri, bucket, name, generation):
    source = ItemSource.parse(uri)

    assert (source.bucket, source.name, source.generation, source.uri) == (bucket, name, generation, uri)


@pytest.mark.parametrize("uri", ["gs://", "gs://bucket", "gs://bucket/", "  "])
def test_request_uri_without_an_object_is_a_configuration_error(uri):
    with pytest.raises(ConfigurationError, match="REQUEST_URI"):
        ItemSource.parse(uri)


def test_default_outbox_follows_the_contract_layout():
    assert ItemSource.parse("gs://in/some/path/name.json#3").default_outbox_uri("out") == "gs://out/some/path/name/"
    assert ItemSource.parse("/data/wf.json").default_outbox_uri("out") == "/data/wf/"
    assert ItemSource.parse("/data/wf.txt").default_outbox_uri("out") == "/data/wf.txt.out/"


def test_a_named_outbox_folder_sits_where_the_documents_own_would():
    layout = InboxLayout("out", "runs/")
    assert ItemSource.parse("gs://in/nightly/a.batch.json#3").outbox_folder(layout, "a") == "gs://out/runs/nightly/a/"
    assert ItemSource.parse("/data/a.batch.json").outbox_folder(layout, "a") == "/data/a/"


def test_a_reference_beside_a_document_stays_in_its_bucket():
    spec = ItemSource.parse("gs://in/specs/a.batch.json#3")
    assert spec.beside("wf.json") == "gs://in/specs/wf.json"
    assert spec.beside("../shared/wf.json") == "gs://in/shared/wf.json"
    assert spec.beside("../../wf.json") is None
    assert ItemSource.parse("/data/specs/a.batch.json").beside("wf.json") == "/data/specs/wf.json"
    assert ItemSource.parse("/data/specs/a.batch.json").beside("/elsewhere/wf.json") == "/elsewhere/wf.json"


def test_newer_generation_supersedes_only_the_same_object():
    old, new = ItemSource.parse("gs://in/a.json#5"), ItemSource.parse("gs://in/a.json#7")

    assert old.superseded_by(new)
    assert not new.superseded_by(old)
    assert not old.superseded_by(ItemSource.parse("gs://in/b.json#9"))
    assert old.same_item(ItemSource.parse("gs://in/a.json#5"))


@pytest.mark.parametrize(
    ("relpath", "safe"),
    [
        ("a.png", "a.png"),
        ("sub/a.png", "sub/a.png"),
        ("../../etc/x.png", "etc/x.png"),
        ("result.json", "output-result.json"),
    ],
)
def test_output_paths_stay_inside_the_folder_and_off_the_result(relpath, safe):
    assert _safe_relpath(relpath) == safe


class RecordingOutbox(Outbox):
    """A real local outbox that also remembers when each status.json write happened."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.status_writes: list[tuple[float, dict[str, Any]]] = []

    def write_status(self, doc):
        self.status_writes.append((time.monotonic(), dict(doc)))
        super().write_status(doc)


def test_status_json_progress_is_throttled_but_state_changes_are_not(tmp_path):
    outbox = RecordingOutbox(Storages(), str(tmp_path / "out"), ItemSource.parse(str(tmp_path / "wf.json")))
    writer = StatusWriter(outbox, {"source": "x"}, interval_s=0.3).start("running")
    started = time.monotonic()
    for step in range(1, 201):  # 200 progress events in about a second
        writer.update(progress={"value": step, "max": 200})
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    changed_at = time.monotonic()
    writer.update(state="uploading")  # right after a progress write was due: must not wait its turn
    time.sleep(0.2)
    writer.close(state="succeeded")

    writes = outbox.status_writes
    assert [doc["state"] for _, doc in writes][-2:] == ["uploading", "succeeded"]
    running = [(at, doc) for at, doc in writes if doc["state"] == "running"]
    assert 2 <= len(running) <= elapsed / 0.3 + 2, "at most one progress write per interval"
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(running[1:])]
    assert all(gap >= 0.25 for gap in gaps), gaps
    assert running[-1][1]["progress"]["value"] >= 150, "coalesced: the latest progress is what gets written"
    uploading_at = next(at for at, doc in writes if doc["state"] == "uploading")
    assert uploading_at - changed_at < 0.1, "a state change is written at once"
    on_disk = json.loads((tmp_path / "out" / "status.json").read_text())
    assert on_disk["state"] == "succeeded"
    assert on_disk["source"] == "x"


def test_result_of_an_older_generation_never_replaces_a_newer_one(gcs, inbox, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    storages = Storages(PROJECT)
    folder = "gs://outbox/cas-test/"
    name = f"gs://{inbox.name}/req.json"
    older = Outbox(storages, folder, ItemSource.parse(f"{name}#5"))
    newer = Outbox(storages, folder, ItemSource.parse(f"{name}#7"))

    assert older.write_result({"status": "success", "source": f"{name}#5"})
    assert newer.write_result({"status": "success", "source": f"{name}#7"}), "a newer generation replaces an older"
    late = Outbox(storages, folder, ItemSource.parse(f"{name}#5"))
    assert not late.write_result({"status": "error", "source": f"{name}#5"})

    assert newer.read_result() == {"status": "success", "source": f"{name}#7"}
