"""MODELS_URI is copied while ComfyUI boots, and no run starts before the copy is done."""

from __future__ import annotations

from pathlib import Path

import pytest

from job.comfyui.process import ComfyServer
from job.engine.boot import comfyui_runner
from job.errors import ConfigurationError
from job.settings import Settings

pytestmark = pytest.mark.comfyui


def _attached(comfy_server: ComfyServer, comfyui_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"comfyui_url": comfy_server.base_url, "comfyui_dir": comfyui_dir}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_models_uri_is_copied_before_comfyui_counts_as_ready(comfy_server: ComfyServer, tmp_path: Path) -> None:
    source = tmp_path / "bucket"
    (source / "checkpoints").mkdir(parents=True)
    (source / "checkpoints" / "tiny.safetensors").write_bytes(b"\0" * 4096)
    comfyui_dir = tmp_path / "ComfyUI"
    comfyui_dir.mkdir()

    with comfyui_runner(_attached(comfy_server, comfyui_dir, models_uri=str(source)), install=False) as runner:
        runner.server.wait_ready(60)
        assert runner.server.ready
        assert (comfyui_dir / "models" / "checkpoints" / "tiny.safetensors").stat().st_size == 4096


def test_a_models_uri_that_does_not_exist_fails_the_boot_naming_the_variable(
    comfy_server: ComfyServer, tmp_path: Path
) -> None:
    settings = _attached(comfy_server, tmp_path, models_uri=str(tmp_path / "no-such-folder"))
    with comfyui_runner(settings, install=False) as runner:
        with pytest.raises(ConfigurationError, match="MODELS_URI"):
            runner.server.wait_ready(60)
        assert not runner.server.ready
