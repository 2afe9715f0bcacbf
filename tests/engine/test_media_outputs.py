"""Real audio and video outputs, model-free, on the session's ComfyUI: each file comes back with its
content type among the run's files, and decodes (PyAV) to what the workflow made.

Savers a ComfyUI line lacks are skipped by asking that ComfyUI (/object_info), never by its version."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from job.engine.runner import Runner
from tests.support.comfy import AUDIO_SAVERS, AudioSaver, audio_workflow, is_dynamic_combo, video_workflow
from tests.support.media import Tone, assert_is_the_tone, decode_audio, decode_video, sine_wav

pytestmark = pytest.mark.comfyui

TONE = Tone(rate=48000, seconds=0.5, hz=440.0)
FRAMES, SIZE, FPS = 8, (64, 48), 8.0
COLOR, RGB = 0x2080C0, (0x20, 0x80, 0xC0)


@pytest.fixture(scope="module")
def object_info(runner: Runner) -> dict[str, Any]:
    return runner.client.object_info()


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _close(pixel: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


@pytest.mark.parametrize("saver", AUDIO_SAVERS, ids=lambda saver: saver.class_type)
def test_audio_saved_from_an_uploaded_wav_comes_back_with_its_content_type_and_decodes(
    runner: Runner, object_info: dict[str, Any], saver: AudioSaver
) -> None:
    if not saver.offered_by(object_info):
        pytest.skip(f"this ComfyUI has no {saver.class_type} node")
    tag = _tag()
    wav = f"tone-{tag}.wav"

    result = runner.run(
        audio_workflow(wav, (saver,), prefix=f"audio/{tag}"), inputs={wav: sine_wav(TONE)}, timeout_s=60
    )

    (output,) = result.files
    assert (output.ref.node_id, output.ref.key, output.ref.folder_type) == ("2", "audio", "output")
    assert output.ref.subfolder == "audio", "the prefix's folder is kept"
    assert output.filename.startswith(f"{tag}_{saver.class_type}_") and output.filename.endswith(saver.suffix)
    assert output.content_type == saver.content_type
    assert not output.ref.is_still_image
    assert result.outputs["2"]["audio"] == [{"filename": output.filename, "subfolder": "audio", "type": "output"}]
    info = decode_audio(output.data)
    assert info.codec == saver.codec
    assert_is_the_tone(info, TONE)
    if saver.lossless:
        assert info.samples == TONE.samples


@pytest.mark.parametrize("codec", ["auto", "h264"])
def test_an_image_batch_saved_as_mp4_comes_back_as_a_video_of_as_many_frames(runner: Runner, codec: str) -> None:
    tag = _tag()

    result = runner.run(
        video_workflow(f"video/{tag}", frames=FRAMES, size=SIZE, color=COLOR, fps=FPS, codec=codec), timeout_s=60
    )

    (output,) = result.files
    assert (output.ref.node_id, output.ref.subfolder, output.ref.folder_type) == ("3", "video", "output")
    assert output.filename.startswith(f"{tag}_") and output.filename.endswith(".mp4")
    assert output.content_type == "video/mp4"
    # SaveVideo reports its file under `images`, flagged animated: that keeps it out of the stills.
    assert result.outputs["3"]["animated"] == [True]
    assert not output.ref.is_still_image
    video = decode_video(output.data)
    assert (video.codec, video.width, video.height, video.frames) == ("h264", *SIZE, FRAMES)
    assert video.fps == FPS
    assert _close(video.first_pixel, RGB), video.first_pixel
    assert video.audio_codec is None


def test_save_video_takes_its_dynamic_combo_options_as_dotted_inputs(
    runner: Runner, object_info: dict[str, Any]
) -> None:
    if not is_dynamic_combo(object_info, "SaveVideo", "codec"):
        pytest.skip("this ComfyUI's SaveVideo `codec` is a plain combo: it has no encoding options")
    options = {"codec.encoding": "re-encode", "codec.encoding.crf": 40.0}

    result = runner.run(video_workflow(f"video/{_tag()}", codec="h264", codec_inputs=options), timeout_s=60)

    (output,) = result.files
    # x264 writes its settings into the stream; its default would read crf=23.0.
    assert b"crf=40.0" in output.data
    assert decode_video(output.data).frames == FRAMES


def test_a_video_with_the_uploaded_wav_as_sound_track_carries_the_tone(runner: Runner) -> None:
    tag = _tag()
    wav = f"track-{tag}.wav"

    result = runner.run(
        video_workflow(f"video/{tag}", frames=FRAMES, fps=FPS, wav_name=wav), inputs={wav: sine_wav(TONE)}, timeout_s=60
    )

    (output,) = result.files
    assert output.content_type == "video/mp4"
    video = decode_video(output.data)
    assert (video.frames, video.audio_codec) == (FRAMES, "aac")
    sound = decode_audio(output.data)
    assert sound.rate == TONE.rate
    assert sound.channels >= TONE.channels  # 0.3.75 writes a mono track as stereo AAC
    assert abs(sound.samples - TONE.samples) <= sound.frame_samples, "the tone is shorter than the video: kept whole"
    assert abs(sound.peak_hz - TONE.hz) <= 2 / TONE.seconds
