"""One request, executed: the one place where a request document becomes a run and its answer.

    request ──> inputs (inline images decoded, references fetched)   engine.inputs.gather_inputs
           ──> Runner.run on a ready ComfyUI                         engine.runner
           ──> output format (png as ComfyUI wrote it, webp, jpeg)   engine.response
           ──> publish: inline base64, or each file to a store       Publish (below)
           ──> the success body (docs/api.md section 3)              engine.response.success_body

`POST /predict`, an inbox item, a batch item and `worker-comfyui run` all execute through
`run_request`; they differ only in where inputs come from, where outputs go (`Publish`) and what
they do around it (admission, status.json, result.json, a terminal), which they pass in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from job.comfyui.outputs import OutputFile
from job.comfyui.tracker import ProgressCallback
from job.engine.inputs import Fetch
from job.engine.request import WorkflowRequest
from job.engine.response import apply_output_format, success_body
from job.engine.runner import Runner, RunResult

# Stores every output file whole, once in its final format; relpath -> the URI its body entry names.
Publish = Callable[[list[OutputFile], RunResult], Mapping[str, str]]


@dataclass(frozen=True)
class Completed:
    """A request that ran to its end: ComfyUI's result, the files as delivered, the success body."""

    result: RunResult
    files: list[OutputFile]
    body: dict[str, Any]


@dataclass
class RunOptions:
    """How one execution is followed: its deadline, progress, cancellation, and a last look before
    the outputs are published (an inbox item checks that its object was not overwritten meanwhile)."""

    timeout_s: float | None = None
    on_progress: ProgressCallback | None = None
    cancel: threading.Event | None = None
    before_publish: Callable[[RunResult], None] | None = None
    inputs: Mapping[str, bytes] = field(default_factory=dict)
    # Fetches the workflow's URL file values (docs/api.md section 2), as `inputs` references are.
    fetch: Fetch | None = None


def run_request(
    request: WorkflowRequest, runner: Runner, options: RunOptions, publish: Publish | None = None
) -> Completed:
    """Run `request` with `options.inputs` already gathered; WorkerError on any failure.

    Without `publish` the body carries each file's bytes as base64; with it, each file's URI.
    The deadline is `options.timeout_s`, else the request's, else the runner's default.
    """
    result = runner.run(
        request.workflow,
        inputs=options.inputs,
        timeout_s=options.timeout_s or request.timeout_s,
        on_progress=options.on_progress,
        cancel=options.cancel,
        fetch=options.fetch,
        extra_data=request.extra_data,
    )
    files = apply_output_format(result.files, request.output)
    if options.before_publish is not None:
        options.before_publish(result)
    uris = publish(files, result) if publish is not None else None
    body = success_body(result, files, uris=uris)
    if request.id is not None:
        body["id"] = request.id
    return Completed(result=result, files=files, body=body)
