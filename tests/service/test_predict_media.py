"""POST /predict with real audio and video outputs: they come back under `files` (never `images`),
each with its content type, and their base64 data decodes (PyAV) to what the workflow made.

The WAV goes in by reference (`inputs`, gs://): inline `images` accept only pictures."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from job.engine.runner import Runner
from tests.service.conftest import Service
from tests.support.comfy import FLAC, MP3, OPUS, audio_workflow, video_workflow
from tests.support.media import Tone, assert_is_the_tone, decode_audio, decode_video, sine_wav

pytestmark = pytest.mark.comfyui

TONE = Tone(rate=48000, seconds=0.5, hz=440.0)


def _wav_in_inputs_bucket(gcs_client: Any, tag: str) -> str:
    gcs_client.bucket("inputs").blob(f"media/{tag}/tone.wav").upload_from_string(
        sine_wav(TONE), content_type="audio/wav"
    )
    return f"gs://inputs/media/{tag}/tone.wav"


def test_flac_mp3_and_opus_from_a_wav_come_back_in_files_and_decode(
    service: Service, runner: Runner, gcs_client: Any
) -> None:
    savers = tuple(saver for saver in (FLAC, MP3, OPUS) if saver.offered_by(runner.client.object_info()))
    assert FLAC in savers, "SaveAudio (FLAC) is on every line"
    tag = uuid.uuid4().hex[:8]
    wav = f"svc-tone-{tag}.wav"
    body = {
        "workflow": audio_workflow(wav, savers, prefix=f"audio/{tag}"),
        "inputs": {wav: _wav_in_inputs_bucket(gcs_client, tag)},
    }

    response = service.predict(body)

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["images"] == []
    by_node = {entry["node_id"]: entry for entry in result["files"]}
    assert len(by_node) == len(result["files"]) == len(savers)
    for node_id, saver in enumerate(savers, start=2):
        entry = by_node[str(node_id)]
        assert entry["content_type"] == saver.content_type
        assert entry["filename"].startswith(f"{tag}_{saver.class_type}_") and entry["filename"].endswith(saver.suffix)
        assert (entry["subfolder"], entry["type"]) == ("audio", "output")
        data = base64.b64decode(entry["data"])
        assert entry["size"] == len(data)
        info = decode_audio(data)
        assert info.codec == saver.codec
        assert_is_the_tone(info, TONE)


def test_an_mp4_of_an_image_batch_comes_back_in_files_as_video_mp4_and_decodes(service: Service) -> None:
    tag = uuid.uuid4().hex[:8]

    response = service.predict({"workflow": video_workflow(f"video/{tag}", frames=8, size=(64, 48), fps=8.0)})

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["images"] == [], "an mp4 is not a still image, though SaveVideo reports it under `images`"
    (entry,) = result["files"]
    assert entry["node_id"] == "3"
    assert entry["content_type"] == "video/mp4"
    assert entry["filename"].startswith(f"{tag}_") and entry["filename"].endswith(".mp4")
    assert (entry["subfolder"], entry["type"]) == ("video", "output")
    data = base64.b64decode(entry["data"])
    assert entry["size"] == len(data)
    video = decode_video(data)
    assert (video.codec, video.width, video.height, video.frames) == ("h264", 64, 48, 8)
    assert result["outputs"]["3"]["images"][0]["filename"] == entry["filename"]
