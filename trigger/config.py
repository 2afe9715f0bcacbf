"""The trigger's settings: read once from the environment at the edge, then passed down frozen.

Every variable has a default that works locally (against `job.devstack`'s stand-ins); production sets
at least GOOGLE_CLOUD_PROJECT, REGION, JOB_NAME and OUTBOX_BUCKET.

    GOOGLE_CLOUD_PROJECT  project that owns the Cloud Run job (GCP_PROJECT is read as a fallback)
                          default: local-project
    REGION                region of the Cloud Run job                     default: us-central1
    JOB_NAME              Cloud Run job to run for each inbox object       default: worker-comfyui
    OUTBOX_BUCKET         bucket the job writes results to                 default: outbox
    OUTBOX_PREFIX         folder inside OUTBOX_BUCKET for results; needed when the outbox is the
                          inbox bucket, so results are not taken for requests  default: "" (none)
    CLAIMS_PREFIX         folder in the inbox bucket holding one claim per object generation
                          default: _claims/
    MAX_REQUEST_BYTES     inbox objects larger than this are ignored        default: 52428800 (50 MiB)
    CLAIM_LEASE_S         how long a claim whose job was not started stays held; after it a
                          redelivery takes the claim over (a crash between claim and run)
                          default: 90; must exceed RUN_JOB_TIMEOUT_S
    CLAIM_WAIT_S          how long a duplicate delivery waits for the claim's holder to start
                          the job before answering 5xx (Eventarc then redelivers)   default: 10
    RUN_JOB_TIMEOUT_S     deadline of the Cloud Run Admin API `jobs.run` call       default: 30
    MAX_EXECUTIONS        start a new execution only while fewer than this many of the job's
                          executions are active; otherwise answer 5xx and leave the item pending
                          for a running task to drain (capacity.py, docs/drain.md)  default: 10
    RUN_API_ENDPOINT      Admin API address override, e.g. http://127.0.0.1:8123 for the local
                          stand-in (`job.devstack.run_api`); anonymous credentials and REST then
                          default: unset (the real API with the function's service account)
    STORAGE_EMULATOR_HOST GCS address override, e.g. http://127.0.0.1:4443 (fake-gcs-server);
                          anonymous credentials then                 default: unset (real GCS)

Prefixes are normalised to end in "/" (`_claims` means `_claims/`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigurationError
from .objects import DEFAULT_MAX_REQUEST_BYTES, InboxLayout, folder_prefix

_SEGMENT = re.compile(r"[^/\s]*")

DEFAULT_PROJECT = "local-project"
DEFAULT_REGION = "us-central1"
DEFAULT_JOB_NAME = "worker-comfyui"


@dataclass(frozen=True)
class TriggerConfig:
    """Everything the trigger needs to know, validated."""

    project: str = DEFAULT_PROJECT
    region: str = DEFAULT_REGION
    job_name: str = DEFAULT_JOB_NAME
    outbox_bucket: str = "outbox"
    outbox_prefix: str = ""
    claims_prefix: str = "_claims/"
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    claim_lease_s: float = 90.0
    claim_wait_s: float = 10.0
    run_job_timeout_s: float = 30.0
    max_executions: int = 10
    run_api_endpoint: str | None = None
    storage_emulator_host: str | None = None

    @property
    def layout(self) -> InboxLayout:
        """Where results and claims go, and which objects are requests."""
        return InboxLayout(self.outbox_bucket, self.outbox_prefix, self.claims_prefix, self.max_request_bytes)

    @property
    def job_path(self) -> str:
        """The job's full resource name, as the Admin API wants it."""
        return f"projects/{self.project}/locations/{self.region}/jobs/{self.job_name}"


def load_config(environ: Mapping[str, str]) -> TriggerConfig:
    """Build the config from an environment mapping; any error names the variable to fix."""
    env = _Env(environ)
    project = env.name("GOOGLE_CLOUD_PROJECT") or env.name("GCP_PROJECT") or DEFAULT_PROJECT
    config = TriggerConfig(
        project=project,
        region=env.name("REGION") or DEFAULT_REGION,
        job_name=env.name("JOB_NAME") or DEFAULT_JOB_NAME,
        outbox_bucket=env.name("OUTBOX_BUCKET") or "outbox",
        outbox_prefix=env.prefix("OUTBOX_PREFIX", ""),
        claims_prefix=env.prefix("CLAIMS_PREFIX", "_claims/"),
        max_request_bytes=env.integer("MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES),
        claim_lease_s=env.seconds("CLAIM_LEASE_S", 90.0),
        claim_wait_s=env.seconds("CLAIM_WAIT_S", 10.0, allow_zero=True),
        run_job_timeout_s=env.seconds("RUN_JOB_TIMEOUT_S", 30.0),
        max_executions=env.integer("MAX_EXECUTIONS", 10),
        run_api_endpoint=env.url("RUN_API_ENDPOINT"),
        storage_emulator_host=env.url("STORAGE_EMULATOR_HOST"),
    )
    if config.claim_lease_s <= config.run_job_timeout_s:
        raise ConfigurationError(
            f"CLAIM_LEASE_S={config.claim_lease_s:g} must exceed RUN_JOB_TIMEOUT_S="
            f"{config.run_job_timeout_s:g}: a claim must outlive the run_job call it guards"
        )
    if not config.claims_prefix:
        raise ConfigurationError("CLAIMS_PREFIX is empty: claims need a folder of their own, e.g. _claims/")
    return config


class _Env:
    """Typed reads from an environment mapping, with errors that name the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str) -> str:
        return self._environ.get(name, "").strip()

    def name(self, name: str) -> str:
        """A resource name (project, region, job, bucket): one path segment, no spaces."""
        value = self.text(name)
        if value.startswith("gs://"):
            raise ConfigurationError(f"{name}={value!r}: give the bare bucket name, without gs://")
        if not _SEGMENT.fullmatch(value):
            raise ConfigurationError(f"{name}={value!r} must be a bare name (no '/', no spaces)")
        return value

    def prefix(self, name: str, default: str) -> str:
        raw = self._environ.get(name)
        return folder_prefix(default if raw is None else raw)

    def integer(self, name: str, default: int) -> int:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
        if value <= 0:
            raise ConfigurationError(f"{name}={raw!r} must be positive")
        return value

    def seconds(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(f"{name}={raw!r} is not a number of seconds") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigurationError(f"{name}={raw!r} must be {'>= 0' if allow_zero else '> 0'}")
        return value

    def url(self, name: str) -> str | None:
        raw = self.text(name)
        if not raw:
            return None
        if "://" not in raw:
            raw = "http://" + raw  # STORAGE_EMULATOR_HOST is often written as host:port
        if not raw.startswith(("http://", "https://")):
            raise ConfigurationError(f"{name}={raw!r} must be an http:// or https:// address")
        return raw.rstrip("/")
