"""The trigger's settings: local defaults, and errors that name the variable to fix."""

from __future__ import annotations

import pytest

from trigger.config import TriggerConfig, load_config
from trigger.errors import ConfigurationError


def test_defaults_work_against_the_local_stand_ins():
    config = load_config({})

    assert config == TriggerConfig()
    assert config.job_path == "projects/local-project/locations/us-central1/jobs/worker-comfyui"
    assert (config.outbox_bucket, config.outbox_prefix, config.claims_prefix) == ("outbox", "", "_claims/")
    assert config.max_request_bytes == 50 * 1024 * 1024


def test_prefixes_and_addresses_are_normalised():
    config = load_config(
        {
            "OUTBOX_PREFIX": "/results",
            "CLAIMS_PREFIX": "locks",
            "STORAGE_EMULATOR_HOST": "localhost:4443",
            "RUN_API_ENDPOINT": "http://127.0.0.1:9/",
            "GCP_PROJECT": "legacy",
        }
    )

    assert (config.outbox_prefix, config.claims_prefix) == ("results/", "locks/")
    assert config.storage_emulator_host == "http://localhost:4443"
    assert config.run_api_endpoint == "http://127.0.0.1:9"
    assert config.project == "legacy"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"MAX_REQUEST_BYTES": "50MB"}, "MAX_REQUEST_BYTES='50MB'"),
        ({"MAX_REQUEST_BYTES": "0"}, "MAX_REQUEST_BYTES='0' must be positive"),
        ({"CLAIM_WAIT_S": "soon"}, "CLAIM_WAIT_S='soon'"),
        ({"CLAIM_LEASE_S": "10", "RUN_JOB_TIMEOUT_S": "30"}, "CLAIM_LEASE_S=10 must exceed RUN_JOB_TIMEOUT_S=30"),
        ({"OUTBOX_BUCKET": "gs://outbox"}, "OUTBOX_BUCKET='gs://outbox': give the bare bucket name"),
        ({"JOB_NAME": "jobs/worker"}, "JOB_NAME='jobs/worker' must be a bare name"),
        ({"CLAIMS_PREFIX": ""}, "CLAIMS_PREFIX is empty"),
        ({"RUN_API_ENDPOINT": "ftp://x"}, "RUN_API_ENDPOINT='ftp://x'"),
    ],
)
def test_bad_values_name_the_variable(env, names):
    with pytest.raises(ConfigurationError) as caught:
        load_config(env)

    assert names in str(caught.value)
