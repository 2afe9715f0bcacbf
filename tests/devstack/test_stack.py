"""The dev stack in this process: inbox -> notifier -> function (a functions-framework process) ->
Admin API stand-in -> `worker-comfyui job` process -> outbox, with results read back from the emulator.

The stack attaches to the session ComfyUI (COMFYUI_URL), so these tests cost no ComfyUI boot; the
stack's own ComfyUI child is exercised by tests/devstack/test_dev_command.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from job.client.local_stack import StackInfo
from job.client.submission import (
    OutboxWatch,
    Submitted,
    build_request,
    download_outputs,
    output_uris,
    upload,
)
from job.devstack.children import StackError
from job.devstack.events import finalized_event
from job.devstack.ports import Ports
from job.devstack.stack import DevStack, StackConfig
from tests.support.comfy import png_bytes
from trigger.objects import InboxLayout

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "workflows" / "invert_input.json"
IMAGE = REPO / "workflows" / "input.png"
ANY_PORTS = Ports(gcs=0, comfyui=0, function=0, run_api=0, service=0)

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def stack(tmp_path_factory, comfy_server, comfy_settings_session):
    settings = comfy_settings_session.model_copy(update={"comfyui_url": comfy_server.base_url})
    environ = {**os.environ, "DRAIN_MAX_ITEMS": "1"}  # one execution per drop: these tests count jobs.run calls
    config = StackConfig(settings=settings, environ=environ, data_dir=tmp_path_factory.mktemp("dev"), ports=ANY_PORTS)
    with DevStack(config) as running:
        yield running


@pytest.fixture
def client(stack):
    assert stack.info is not None
    return stack.info.storage_client()


def _send(stack, client, name, color=(200, 30, 30)):
    doc = build_request(WORKFLOW, {"input.png": png_bytes((32, 24), color)})
    info = stack.info
    return upload(
        client, doc, inbox_bucket=info.inbox_bucket, name=name, outbox_bucket=info.outbox_bucket, outbox_prefix=""
    )


def _runs_for(stack, submitted):
    """The `jobs.run` calls whose overrides named this inbox object (any generation)."""
    prefix = f"gs://{submitted.inbox_bucket}/{submitted.name}#"
    uris = []
    for run in stack.run_api.runs:
        for container in run["body"]["overrides"]["containerOverrides"]:
            env = {item["name"]: item["value"] for item in container["env"]}
            if env["REQUEST_URI"].startswith(prefix):
                uris.append(env["REQUEST_URI"])
    return uris


def _pixel(client, uri):
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    image = Image.open(io.BytesIO(client.bucket(bucket).blob(name).download_as_bytes()))
    return image.size, image.convert("RGB").getpixel((5, 5))


def _near(pixel, expected):
    """ComfyUI computes in float32; a channel may be off by one after the round trip."""
    return all(abs(a - b) <= 1 for a, b in zip(pixel, expected, strict=True))


@pytest.mark.slow
def test_submitted_workflow_runs_through_inbox_event_job_and_outbox(stack, client, tmp_path):
    submitted = _send(stack, client, "e2e/invert.json")

    result = OutboxWatch(client, submitted).wait(timeout_s=120)

    assert result["status"] == "success", result
    assert result["source"] == submitted.inbox_uri
    [uri] = output_uris(result)
    assert uri.startswith("gs://outbox/e2e/invert/inverted_")
    size, pixel = _pixel(client, uri)
    assert size == (128, 128) and _near(pixel, (55, 225, 225))  # the input, inverted and scaled
    assert _runs_for(stack, submitted) == [submitted.inbox_uri]
    [path] = download_outputs(client, result, submitted, tmp_path)
    assert path.parent == tmp_path and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stack.check()  # every part still up


def test_duplicate_notification_for_one_generation_starts_nothing_new(stack, client):
    submitted = _send(stack, client, "dup/invert.json")
    first = OutboxWatch(client, submitted).wait(timeout_s=120)
    resource = httpx.get(f"{stack.info.gcs}/storage/v1/b/inbox/o/{quote(submitted.name, safe='')}").json()
    [original] = [d for d in stack.notifier.deliveries if d.name == submitted.name]

    # Eventarc's redelivery (same id) and a second event for the same generation (new id).
    again = [
        stack.notifier.deliver(finalized_event(resource, event_id=original.event_id)),
        stack.notifier.deliver(finalized_event(resource)),
    ]

    assert [delivery.status for delivery in again] == [200, 200]
    assert _runs_for(stack, submitted) == [submitted.inbox_uri]  # run_job is recorded before the function answers
    assert OutboxWatch(client, submitted).result() == first


@pytest.mark.slow
def test_overwrite_with_changed_content_runs_again(stack, client):
    first = _send(stack, client, "twice/invert.json", color=(200, 30, 30))
    first_result = OutboxWatch(client, first).wait(timeout_s=120)

    second = _send(stack, client, "twice/invert.json", color=(10, 20, 30))
    second_result = OutboxWatch(client, second).wait(timeout_s=120)

    assert second.generation > first.generation
    assert _runs_for(stack, second) == [first.inbox_uri, second.inbox_uri]
    assert second_result["source"] == second.inbox_uri
    assert _near(_pixel(client, output_uris(first_result)[0])[1], (55, 225, 225))
    assert _near(_pixel(client, output_uris(second_result)[0])[1], (245, 235, 225))


@pytest.mark.slow
def test_identical_bytes_uploaded_again_are_a_new_generation_and_run_again(stack, client):
    """As on GCS: every upload is a new generation, even of the same bytes; only a redelivery is a duplicate."""
    doc = json.dumps(build_request(WORKFLOW, {"input.png": png_bytes()})).encode()
    blob = client.bucket("inbox").blob("same/invert.json")
    generations = []
    for _ in range(2):
        blob.upload_from_string(doc, content_type="application/json")
        generations.append(blob.generation)
        submitted = _submitted(stack, "same/invert.json", blob.generation)
        OutboxWatch(client, submitted).wait(timeout_s=120)

    assert generations[0] != generations[1]
    assert _runs_for(stack, submitted) == [f"gs://inbox/same/invert.json#{g}" for g in generations]


def test_submit_command_explains_a_failed_node(stack, tmp_path):
    bad = tmp_path / "bad.json"
    workflow = json.loads(WORKFLOW.read_text())
    workflow["1"]["inputs"]["image"] = "never-uploaded.png"
    bad.write_text(json.dumps(workflow))

    done = subprocess.run(
        [sys.executable, "-m", "job", "submit", str(bad), "--wait", "--data-dir", str(stack.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )

    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("inbox:  gs://inbox/bad-")
    assert "node 1 (LoadImage)" in done.stderr
    assert "never-uploaded.png" in done.stderr


@pytest.mark.slow
def test_submit_command_downloads_the_outputs(stack, tmp_path):
    done = subprocess.run(
        [
            sys.executable, "-m", "job", "submit", str(WORKFLOW), "--image", f"input.png={IMAGE}",
            "--wait", "--out", str(tmp_path / "out"), "--data-dir", str(stack.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("inbox:  gs://inbox/invert_input-") and lines[1].startswith("outbox: gs://outbox/")
    [output] = [Path(line) for line in lines[2:]]
    assert output.parent == tmp_path / "out" and Image.open(output).size == (128, 128)


def test_a_second_stack_on_the_same_data_dir_is_refused(stack):
    config = StackConfig(settings=stack.config.settings, data_dir=stack.data_dir, ports=ANY_PORTS)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = StackInfo.load(stack.data_dir)
        StackInfo(**{**info.__dict__, "pid": other.pid}).save(stack.data_dir)  # as if another process ran it
        with pytest.raises(StackError, match=rf"a dev stack \(pid {other.pid}\) already runs"):
            DevStack(config).start()
    finally:
        info.save(stack.data_dir)
        other.kill()
        other.wait()


def _submitted(stack, name, generation):
    return Submitted(
        "inbox",
        name,
        int(generation),
        stack.info.outbox_bucket,
        InboxLayout(stack.info.outbox_bucket, stack.info.outbox_prefix).outbox_path(name),
    )
