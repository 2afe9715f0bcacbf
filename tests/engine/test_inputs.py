"""Inputs reach ComfyUI's input folder under their bare names, or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from job.engine.runner import Runner
from job.errors import InvalidInput
from tests.support.comfy import invert_workflow, png_bytes

pytestmark = pytest.mark.comfyui  # a real ComfyUI: the session's or the test's own


def _files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize(
    "name", ["../escaped.png", "/tmp/escaped.png", "esc\x00aped.png", "..\\escaped.png", "sub/escaped.png", ".."]
)
def test_input_name_with_a_path_is_refused_before_anything_is_written(
    runner: Runner, comfy_base: Path, name: str
) -> None:
    before = _files_under(comfy_base)
    inputs = {"innocent.png": png_bytes(), name: png_bytes()}  # a good name first: it must not land either

    with pytest.raises(InvalidInput) as caught:
        runner.run(invert_workflow("innocent.png"), inputs=inputs, timeout_s=30)

    assert repr(name) in caught.value.message
    assert "plain file name" in caught.value.message
    assert _files_under(comfy_base) == before
    assert not Path("/tmp/escaped.png").exists()
