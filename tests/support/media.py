"""Audio and video for tests: a sine WAV made on the spot, and PyAV decoders that say what a file holds."""

from __future__ import annotations

import io
import struct
import wave
import zlib
from dataclasses import dataclass

import av
import numpy as np


@dataclass(frozen=True)
class Tone:
    """A sine wave, as `sine_wav` writes it: 16-bit PCM."""

    rate: int = 48000  # Opus's own rate, so no saver resamples it
    seconds: float = 0.5
    hz: float = 440.0
    channels: int = 1

    @property
    def samples(self) -> int:
        return round(self.rate * self.seconds)


def sine_wav(tone: Tone = Tone()) -> bytes:
    """The tone as a WAV file (every channel the same sine, at about a third of full scale)."""
    t = np.arange(tone.samples) / tone.rate
    wave_ = (0.35 * 32767 * np.sin(2 * np.pi * tone.hz * t)).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(tone.channels)
        out.setsampwidth(2)
        out.setframerate(tone.rate)
        out.writeframes(np.repeat(wave_, tone.channels).tobytes())
    return buffer.getvalue()


@dataclass(frozen=True)
class AudioInfo:
    """The first audio stream of a file, decoded whole."""

    container: str
    codec: str  # the codec's canonical name ("mp3", not the decoder's "mp3float")
    rate: int
    channels: int
    samples: int  # decoded, per channel
    frame_samples: int  # the longest decoded frame: the codec's granularity
    peak_hz: float  # the strongest frequency of the first channel

    @property
    def seconds(self) -> float:
        return self.samples / self.rate


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file, decoded whole."""

    container: str
    codec: str
    width: int
    height: int
    frames: int
    fps: float
    first_pixel: tuple[int, int, int]  # RGB at the centre of the first frame
    audio_codec: str | None  # the first audio stream's codec, if the file has one


def decode_audio(data: bytes) -> AudioInfo:
    with av.open(io.BytesIO(data), "r") as container:
        assert container.streams.audio, f"no audio stream in this {container.format.name} file"
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        frame_samples = 0
        for frame in container.decode(stream):
            samples = frame.to_ndarray()
            # planar formats come as (channels, n), packed ones as (1, n * channels)
            first = samples[0] if frame.format.is_planar else samples.reshape(-1, stream.channels)[:, 0]
            chunks.append(first.astype(np.float64))
            frame_samples = max(frame_samples, frame.samples)
        signal = np.concatenate(chunks) if chunks else np.zeros(0)
        rate = stream.codec_context.sample_rate
        return AudioInfo(
            container=container.format.name,
            codec=stream.codec_context.codec.canonical_name,
            rate=rate,
            channels=stream.channels,
            samples=len(signal),
            frame_samples=frame_samples,
            peak_hz=_peak_hz(signal, rate),
        )


def decode_video(data: bytes) -> VideoInfo:
    with av.open(io.BytesIO(data), "r") as container:
        assert container.streams.video, f"no video stream in this {container.format.name} file"
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert frames, "the video stream decodes to no frame"
        picture = frames[0].to_ndarray(format="rgb24")
        y, x = picture.shape[0] // 2, picture.shape[1] // 2
        audio = container.streams.audio
        return VideoInfo(
            container=container.format.name,
            codec=stream.codec_context.codec.canonical_name,
            width=frames[0].width,
            height=frames[0].height,
            frames=len(frames),
            fps=float(stream.average_rate or 0),
            first_pixel=(int(picture[y, x, 0]), int(picture[y, x, 1]), int(picture[y, x, 2])),
            audio_codec=audio[0].codec_context.codec.canonical_name if audio else None,
        )


def assert_is_the_tone(info: AudioInfo, tone: Tone) -> None:
    """The decoded audio is `tone`: same rate and channels, as long within one codec frame, same pitch."""
    assert info.rate == tone.rate
    assert info.channels == tone.channels
    assert abs(info.samples - tone.samples) <= max(info.frame_samples, 1), (info.samples, tone.samples)
    assert abs(info.peak_hz - tone.hz) <= 2 / tone.seconds, info.peak_hz  # two FFT bins


def _peak_hz(signal: np.ndarray, rate: int) -> float:
    if len(signal) == 0:
        return 0.0
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[int(spectrum.argmax())])


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header says `width` x `height` and whose pixel data is `idat`, CRCs all valid."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
