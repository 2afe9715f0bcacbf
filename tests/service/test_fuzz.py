"""Schemathesis against the service's own OpenAPI schema: at least 500 generated requests, and no
5xx that is not one of the worker's documented errors (the contract's shape, a worker error type)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from schemathesis.core.result import Ok

from tests.service.conftest import MakeService

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

# 5xx the worker documents (job/errors.py); anything else (a crash, FastAPI's plain 500) fails.
WORKER_ERRORS = {
    500: {"execution_error", "configuration_error", "worker_error"},
    502: {"comfyui_crashed", "storage_error"},
    503: {"comfyui_unavailable"},
    504: {"timeout"},
}
# Examples per operation and mode; operations without parameters run out of distinct cases early.
EXAMPLES = {
    ("POST", "/predict"): {GenerationMode.POSITIVE: 260, GenerationMode.NEGATIVE: 160},
    ("GET", "/status/{request_id}"): {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 60},
}
OTHER_EXAMPLES = {GenerationMode.POSITIVE: 5}  # no parameters: nothing to make negative
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def test_generated_requests_get_no_undocumented_server_error(make_service: MakeService) -> None:
    with make_service(max_queue_depth=8) as service:
        schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
        counts: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # the schema itself must load cleanly
            operation = result.ok()
            per_mode = EXAMPLES.get((operation.method.upper(), operation.path), OTHER_EXAMPLES)
            for mode, examples in per_mode.items():
                _fuzz(operation, mode, examples, service.url, counts, statuses)

    total = sum(counts.values())
    print(f"fuzz: {total} cases {dict(counts)}, statuses {dict(sorted(statuses.items()))}")
    assert total >= 500, f"only {total} cases ran: {dict(counts)}"
    assert counts["POST /predict"] >= 300
    assert statuses[400]  # some got as far as ComfyUI's own validation


def _fuzz(
    operation: Any, mode: GenerationMode, examples: int, url: str, counts: Counter[str], statuses: Counter[int]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same cases on every run: a failure here is reproducible
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=url, timeout=60)
        counts[f"{operation.method.upper()} {operation.path}"] += 1
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            body = response.json()
            assert body["status"] == "error", body
            assert body["error"]["type"] in WORKER_ERRORS.get(response.status_code, set()), body
        case.validate_response(response, checks=CHECKS)

    run()
