"""The fake-gcs-server stand-in: real GCS semantics on loopback, a clear refusal, no orphans."""

from __future__ import annotations

import os
import socket

import pytest
from google.api_core import exceptions as gexc

from job.devstack.gcs_emulator import EmulatorError, GcsEmulator


def test_emulator_serves_buckets_and_enforces_generation_preconditions(tmp_path):
    with GcsEmulator(tmp_path, buckets=["inbox"]) as gcs:
        blob = gcs.client().bucket("inbox").blob("a/b.json")
        blob.upload_from_string(b"{}", if_generation_match=0)

        with pytest.raises(gexc.PreconditionFailed):
            gcs.client().bucket("inbox").blob("a/b.json").upload_from_string(b"[]", if_generation_match=0)
        assert gcs.env() == {"STORAGE_EMULATOR_HOST": gcs.url}
        assert os.environ.get("STORAGE_EMULATOR_HOST") != gcs.url  # it tells, it does not set


def test_objects_survive_a_restart_on_the_same_folder(tmp_path):
    with GcsEmulator(tmp_path, buckets=["keep"]) as gcs:
        gcs.client().bucket("keep").blob("x.txt").upload_from_string(b"kept")

    with GcsEmulator(tmp_path) as gcs:
        assert gcs.client().bucket("keep").blob("x.txt").download_as_bytes() == b"kept"


def test_taken_port_is_refused_with_a_clear_message(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        with pytest.raises(EmulatorError, match=rf"port {port} on 127.0.0.1 is already in use"):
            GcsEmulator(tmp_path, port=port).start()


def test_stop_leaves_no_process_behind(tmp_path):
    gcs = GcsEmulator(tmp_path).start()
    assert gcs._process is not None
    pid = gcs._process.pid

    gcs.stop()
    gcs.stop()  # twice is fine

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
