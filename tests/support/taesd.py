"""Tiny TAESD weights made on the spot: a real model file for ComfyUI's model-loading path, no download.

The layer layout mirrors comfy/taesd/taesd.py (Encoder/Decoder) so ComfyUI's strict state-dict load
accepts it; the weights are random, which is all a progress or loading test needs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn


def _conv(n_in: int, n_out: int, **kwargs: object) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)  # type: ignore[arg-type]


class _Block(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()


def _encoder(latent_channels: int) -> nn.Sequential:
    def down() -> list[nn.Module]:
        return [_conv(64, 64, stride=2, bias=False), _Block(64, 64), _Block(64, 64), _Block(64, 64)]

    return nn.Sequential(_conv(3, 64), _Block(64, 64), *down(), *down(), *down(), _conv(64, latent_channels))


def _decoder(latent_channels: int) -> nn.Sequential:
    def up() -> list[nn.Module]:
        return [_Block(64, 64), _Block(64, 64), _Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False)]

    return nn.Sequential(
        nn.Identity(), _conv(latent_channels, 64), nn.ReLU(), *up(), *up(), *up(), _Block(64, 64), _conv(64, 3)
    )


def write_taesd(vae_approx: Path, *, latent_channels: int = 4, seed: int = 0) -> None:
    """Write taesd_encoder/taesd_decoder.safetensors, which makes VAELoader offer "taesd"."""
    torch.manual_seed(seed)
    vae_approx.mkdir(parents=True, exist_ok=True)
    for name, model in (("encoder", _encoder(latent_channels)), ("decoder", _decoder(latent_channels))):
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
        save_file(state, str(vae_approx / f"taesd_{name}.safetensors"))
