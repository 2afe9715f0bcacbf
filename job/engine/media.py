"""Input files a request supplies: plain names, and bytes checked to be media a load node reads.

Inline images (base64), `inputs` references, URL values of file inputs and the CLI's `--image`
files all pass `check_media` before ComfyUI sees them, so a file that would only fail inside
ComfyUI (with the server's paths in its message), or a decompression bomb, is a 400 that says what
to send instead.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable

from PIL import Image

from job.errors import InvalidInput, clip


def check_input_name(name: str) -> str:
    """A bare file name, or InvalidInput: inputs never land outside ComfyUI's input folder."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name or ":" in name:
        raise InvalidInput(
            f"input name {clip(repr(name))} is not a plain file name; "
            "use a name like 'photo.png' without folders or '..'"
        )
    return name


def decode_image(name: str, encoded: str) -> bytes:
    """Bytes of an inline input (base64 or data: URI), checked to be media a load node reads
    (an image, audio or video: `check_media`)."""
    check_input_name(name)
    payload = encoded.split(",", 1)[1] if encoded.startswith("data:") and "," in encoded else encoded
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"input {clip(repr(name))}: `image` is not valid base64 (nor a data: URI)") from None
    check_media(name, data)
    return data


# Containers a load node (LoadAudio, LoadVideo) reads, known by their first bytes: (kind, test).
_CONTAINERS: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("wav", lambda head: head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI ")),
    ("flac", lambda head: head[:4] == b"fLaC"),
    ("ogg", lambda head: head[:4] == b"OggS"),
    ("mp3", lambda head: head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)),
    ("mp4", lambda head: head[4:8] == b"ftyp"),
    ("webm", lambda head: head[:4] == b"\x1a\x45\xdf\xa3"),  # Matroska's EBML header
)


ACCEPTED_KINDS = (
    "an image Pillow opens (png, jpeg, webp, ...), audio (wav, flac, ogg, mp3) or video (mp4, mov, webm, mkv)"
)


def media_kind(data: bytes) -> str | None:
    """The audio or video container `data` starts with, or None (it may still be an image)."""
    head = data[:16]
    return next((kind for kind, test in _CONTAINERS if test(head)), None)


def check_media(name: str, data: bytes) -> None:
    """InvalidInput unless `data` is one of ACCEPTED_KINDS: what the load nodes read, and nothing
    that would only fail later inside ComfyUI (with the server's paths in its message)."""
    if media_kind(data) is not None:
        return
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning where warnings are errors
        raise InvalidInput(
            f"input {clip(repr(name))} has more pixels than it is safe to decode; "
            f"send an image of at most {Image.MAX_IMAGE_PIXELS or 0} pixels"
        ) from None
    except Exception:  # whatever the caller's bytes make Pillow raise is theirs to fix:
        # its plugins raise more than they document (struct.error, KeyError, ...), and with warnings
        # turned errors (-W error) a truncated TIFF's UserWarning, say, is an exception too.
        raise InvalidInput(
            f"input {clip(repr(name))} is not an image, audio or video this worker accepts; send {ACCEPTED_KINDS}"
        ) from None
