"""Fixtures for draining: the whole pipeline (tests/support/inbox_pipeline.py), each task booting
its own ComfyUI. Boots are what these tests count, so no task attaches to a shared ComfyUI."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from job.devstack.gcs_emulator import GcsEmulator
from tests.support.inbox_pipeline import InboxPipeline, comfy_env


@pytest.fixture(scope="session")
def comfy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return comfy_env(tmp_path_factory.mktemp("drain-comfy"))


@pytest.fixture
def pipeline(gcs: GcsEmulator, comfy: dict[str, str]) -> Iterator[Callable[..., InboxPipeline]]:
    """`pipeline(max_executions=2, argv=..., **task_env)` starts one; it is stopped after the test."""
    started: list[InboxPipeline] = []

    def start(max_executions: int, **options: object) -> InboxPipeline:
        line = InboxPipeline(gcs, comfy, max_executions=max_executions, **options)  # type: ignore[arg-type]
        started.append(line)
        return line.start()

    yield start
    for line in reversed(started):
        line.stop()
