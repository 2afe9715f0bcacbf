"""Fixtures for the /predict service: the app under real uvicorn, on the session's real ComfyUI,
with a real fake-gcs-server for the outbox, the inbox and gs:// inputs."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from job.devstack.gcs_emulator import GcsEmulator
from job.engine.runner import Runner
from job.service.app import create_app
from job.settings import Settings
from job.storage import Storages
from tests.support.serve import serve_in_thread


@dataclass
class Service:
    app: FastAPI
    settings: Settings
    url: str
    http: httpx.Client

    def predict(self, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return self.http.post("/predict", json=body, **kwargs)


MakeService = Callable[..., AbstractContextManager[Service]]


def emulator_storages(gcs: GcsEmulator) -> Storages:
    """Storages whose GCS client talks to the emulator (the client google-cloud-storage would build
    from STORAGE_EMULATOR_HOST, without touching this process's environment)."""
    return Storages(gcs.project, client=gcs.client())


@pytest.fixture(scope="session")
def storages(gcs: GcsEmulator) -> Storages:
    return emulator_storages(gcs)


@pytest.fixture
def make_service(runner: Runner, comfy_settings_session: Settings, storages: Storages) -> MakeService:
    """Start the app with settings overrides on the shared ComfyUI: `with make_service(api_token="t") as svc:`."""

    @contextmanager
    def start(*, runner_: Runner | None = None, **overrides: Any) -> Iterator[Service]:
        settings = comfy_settings_session.model_copy(update={"log_format": "json", **overrides})
        app = create_app(settings, runner_ or runner, storages=storages)
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=120) as http:
            yield Service(app=app, settings=settings, url=url, http=http)

    return start


@pytest.fixture
def service(make_service: MakeService) -> Iterator[Service]:
    with make_service() as svc:
        yield svc


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
