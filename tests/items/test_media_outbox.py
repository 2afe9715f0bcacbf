"""The inbox job with real audio and video outputs: each file lands in the item's outbox folder with
its Content-Type, and result.json lists it under `files` with its gs:// URI. The job attaches to the
session ComfyUI; the WAV it loads is a gs:// input in the inbox bucket."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from job.engine.runner import Runner
from tests.items.conftest import job_env
from tests.support.comfy import FLAC, MP3, OPUS, audio_workflow, video_workflow
from tests.support.media import Tone, assert_is_the_tone, decode_audio, decode_video, sine_wav

pytestmark = pytest.mark.comfyui

TONE = Tone(rate=48000, seconds=0.5, hz=440.0)
VIDEO_NODE, FIRST_AUDIO_NODE = "3", 10


def test_audio_and_video_outputs_land_in_the_outbox_with_their_content_types(
    gcs: Any, drop: Any, inbox: Any, run_job: Any, attached: dict[str, str], runner: Runner
) -> None:
    savers = tuple(saver for saver in (FLAC, MP3, OPUS) if saver.offered_by(runner.client.object_info()))
    tag = secrets.token_hex(4)
    wav = f"job-tone-{tag}.wav"
    inbox.blob(f"assets/{wav}").upload_from_string(sine_wav(TONE), content_type="audio/wav")
    workflow = {
        **video_workflow(f"video/{tag}", frames=8, size=(64, 48), fps=8.0),
        **audio_workflow(wav, savers, prefix=f"audio/{tag}", first_id=FIRST_AUDIO_NODE),
    }
    item = drop({"workflow": workflow, "inputs": {wav: f"gs://{inbox.name}/assets/{wav}"}})
    env = job_env(gcs, request_uri=item.request_uri, outbox_uri=item.outbox_uri, **attached)

    code, log = run_job(env)

    assert code == 0, log
    result = item.result()
    assert result is not None and result["status"] == "success", result
    assert result["images"] == []
    by_node = {entry["node_id"]: entry for entry in result["files"]}
    expected = {VIDEO_NODE: "video/mp4"} | {
        str(node_id): saver.content_type for node_id, saver in enumerate(savers, start=FIRST_AUDIO_NODE + 1)
    }
    assert {node_id: entry["content_type"] for node_id, entry in by_node.items()} == expected
    for node_id, entry in by_node.items():
        relpath = f"{entry['subfolder']}/{entry['filename']}"
        assert entry["subfolder"] == ("video" if node_id == VIDEO_NODE else "audio")
        assert entry["uri"] == f"{item.outbox_uri}{relpath}"
        assert "data" not in entry, "result.json carries URIs, not base64"
        stored = item.outbox_object(relpath)
        assert stored is not None, f"{relpath} is not in the outbox"
        assert stored.content_type == entry["content_type"]
        data = item.read(entry["uri"])
        assert len(data) == entry["size"]
        if node_id == VIDEO_NODE:
            video = decode_video(data)
            assert (video.codec, video.width, video.height, video.frames) == ("h264", 64, 48, 8)
        else:
            assert_is_the_tone(decode_audio(data), TONE)
    assert set(item.outbox_names()) >= {f"{e['subfolder']}/{e['filename']}" for e in result["files"]} | {"result.json"}
