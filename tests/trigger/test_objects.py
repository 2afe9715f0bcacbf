"""The inbox-object rules every part derives from one InboxLayout: written out here as literals."""

from __future__ import annotations

import pytest

from trigger.config import load_config
from trigger.objects import (
    InboxLayout,
    StorageObject,
    bucket_name_problem,
    folder_prefix,
    object_name_problem,
    why_ignored,
)


@pytest.mark.parametrize(
    ("given", "folder"),
    [("", ""), ("out", "out/"), ("out/", "out/"), ("/out", "out/"), (" a/b ", "a/b/"), ("a/b//", "a/b//")],
)
def test_a_prefix_becomes_a_folder_once(given: str, folder: str) -> None:
    assert folder_prefix(given) == folder


def test_an_outbox_folder_is_the_object_name_less_json_under_the_prefix() -> None:
    layout = InboxLayout("results", "runs")
    assert layout.outbox_prefix == "runs/"
    assert layout.outbox_path("some/path/name.json") == "runs/some/path/name/"
    assert layout.outbox_folder("some/path/name.json") == "gs://results/runs/some/path/name/"
    assert StorageObject("inbox", "a.json", 3).outbox_uri(layout) == "gs://results/runs/a/"
    assert InboxLayout("outbox").outbox_folder("async/x1.json") == "gs://outbox/async/x1/"


def test_the_trigger_and_the_job_read_the_same_layout_from_the_same_variables() -> None:
    config = load_config({"OUTBOX_BUCKET": "o", "OUTBOX_PREFIX": "/p", "CLAIMS_PREFIX": "c", "MAX_REQUEST_BYTES": "9"})
    assert config.layout == InboxLayout("o", "p/", "c/", 9)
    assert InboxLayout("o", "/p", "c") == InboxLayout("o", "p/", "c/"), "the job passes the raw settings"


@pytest.mark.parametrize(
    "bucket", ["abc", "b" * 63, "in_box-1", "a.b", ".".join(["b" * 63] * 3) + "." + "b" * 30, "1.2.3"]
)
def test_bucket_names_that_gcs_allows_pass(bucket: str) -> None:
    assert bucket_name_problem(bucket) is None


@pytest.mark.parametrize(
    "bucket", ["ab", "b" * 64, "Inbox", "in box", "-a-", "a_", "a..b", "1.2.3.4", "goog1", "my-google", "ïnbox"]
)
def test_bucket_names_that_gcs_refuses_are_refused(bucket: str) -> None:
    assert bucket_name_problem(bucket) is not None


@pytest.mark.parametrize("name", ["a.json", "x" * 1024, "é" * 512, "a/.../b", "..a/b..", "./a", "#[*?]", " "])
def test_object_names_that_gcs_allows_pass(name: str) -> None:
    assert object_name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "x" * 1025, "é" * 513, "a\rb", "a\nb", "a\0b", ".", "..", ".well-known/acme-challenge/t", "\udcff"]
)
def test_object_names_that_gcs_refuses_are_refused(name: str) -> None:
    assert object_name_problem(name) is not None


@pytest.mark.parametrize("name", ["../a.json", "a/../b.json", "a/../../../outbox/b.json"])
def test_a_dotdot_segment_is_refused_and_a_listing_never_offers_it_as_a_request(name: str) -> None:
    assert "'..' path segment" in (object_name_problem(name) or "")
    assert "'..' path segment" in (why_ignored(StorageObject("inbox", name, 1), InboxLayout()) or "")
    assert why_ignored(StorageObject("inbox", name.replace("..", "up"), 1), InboxLayout()) is None
