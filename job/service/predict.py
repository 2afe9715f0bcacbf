"""One /predict request, from parsed document to response body: inputs, the gate, the run, outputs.

Blocking work (fetching inputs, the run itself, image conversion, base64, uploads) happens in
worker threads; the event loop only waits, so /healthz and the disconnect watch stay responsive.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

import orjson

from job.comfyui.outputs import OutputFile
from job.errors import WorkerError
from job.fetch import reference_fetcher
from job.inputs import gather_inputs
from job.request import WorkflowRequest, parse_json, parse_request
from job.response import apply_output_format, success_body
from job.runner import Runner, RunResult
from job.service.admission import CallerGone, QueueGate
from job.service.caller import Caller
from job.service.health import Health
from job.settings import Settings
from job.storage import Storages
from job.webhook import deliver, message_id

log = logging.getLogger(__name__)

OUTBOX_PREFIX = "predict"
_UPLOAD_WORKERS = 8
_WEBHOOK_WORKERS = 4
_WARM_CHECK_S = 0.5  # how soon a restarted ComfyUI gets its warm-up
_INLINE_BYTES = 256 * 1024  # base64 of this much takes well under a millisecond


class Predictor:
    """Runs requests through the gate on the shared runner."""

    def __init__(self, settings: Settings, runner: Runner, storages: Storages, gate: QueueGate) -> None:
        self.settings = settings
        self.runner = runner
        self.storages = storages
        self.gate = gate
        self.fetch = reference_fetcher(settings, storages)
        # Webhooks of sync requests go out after the response, on threads the interpreter waits for
        # at exit: a shutdown still delivers them (each bounded by WEBHOOK_TIMEOUT_S).
        self._webhooks = ThreadPoolExecutor(max_workers=_WEBHOOK_WORKERS, thread_name_prefix="webhook")

    async def predict(self, request: WorkflowRequest, caller: Caller) -> bytes:
        """The contract's sync response body, rendered as JSON; WorkerError or CallerGone otherwise.

        A `webhook` in the request gets the same document, success or error, signed, after the response.
        """
        try:
            result = await self.execute(request, caller)
        except WorkerError as exc:
            self._notify(request, exc.to_body(), key=str(uuid.uuid4()))
            raise
        if _light(request, result):
            body, rendered = self._respond(request, result)
        else:  # base64 and JSON of megabytes: off the event loop
            body, rendered = await asyncio.to_thread(self._respond, request, result)
        log.info(
            "predict done: prompt %s, %d image(s), %d other file(s), %d bytes",
            result.prompt_id,
            len(body["images"]),
            len(body["files"]),
            len(rendered),
            extra={"fields": {"prompt_id": result.prompt_id, "timings": body["timings"]}},
        )
        self._notify(request, body, key=result.prompt_id)
        return rendered

    def _notify(self, request: WorkflowRequest, document: dict[str, Any], *, key: str) -> None:
        """Send `document` to the request's webhook in the background; the outcome is logged."""
        if request.webhook:
            self._webhooks.submit(
                deliver,
                request.webhook,
                document,
                secret=self.settings.webhook_secret,
                msg_id=message_id(f"predict:{key}"),
                attempts=self.settings.webhook_attempts,
                timeout_s=self.settings.webhook_timeout_s,
            )

    async def execute(self, request: WorkflowRequest, caller: Caller) -> RunResult:
        """Admission, inputs, the slot, the run: the RunResult of a finished prompt."""
        timeout_s = request.timeout_s or self.settings.run_timeout_s
        deadline = time.monotonic() + timeout_s
        async with self.gate.admit():
            if request.images or request.inputs:
                inputs = await asyncio.to_thread(gather_inputs, request, self.fetch)
            else:
                inputs = {}
            async with self.gate.slot(deadline, caller.gone):
                run = functools.partial(
                    self.runner.run,
                    request.workflow,
                    inputs=inputs,
                    timeout_s=max(deadline - time.monotonic(), 0.001),
                    cancel=caller.cancel,
                )
                try:
                    return await asyncio.to_thread(run)
                except WorkerError:
                    if caller.cancel.is_set():
                        raise CallerGone from None
                    raise

    async def keep_warm(self, uri: str, health: Health) -> None:
        """Run WARMUP_WORKFLOW on every boot of ComfyUI, the first and each restart, so the first real
        request after either finds the models loaded. Runs for the app's life; cancelled at shutdown."""
        while True:
            try:
                await asyncio.to_thread(self.runner.server.wait_ready, self.settings.comfyui_boot_timeout_s)
            except WorkerError:  # down for now (restarting): look again shortly
                await asyncio.sleep(_WARM_CHECK_S)
                continue
            generation = self.runner.server.generation
            if generation != health.warmed_generation and health.warmup != "failed":
                await self._warm_up(uri, health, generation)
            await asyncio.sleep(_WARM_CHECK_S)
            if self.runner.server.generation != generation:
                health.warmup, health.warmup_error = "pending", None  # a new boot: warm it up too

    async def _warm_up(self, uri: str, health: Health, generation: int) -> None:
        try:
            health.warmup = "running"
            raw = await asyncio.to_thread(self.storages.read, uri)
            request = parse_request(parse_json(raw))
            result = await self.execute(request, Caller(None))
        except WorkerError as exc:
            health.warmup, health.warmup_error = "failed", exc.message
            log.error("warm-up workflow %s failed: %s", uri, exc.message)
            return
        health.warmup, health.warmed_generation = "done", generation
        log.info(
            "warm-up workflow %s done (ComfyUI boot %d)",
            uri,
            generation,
            extra={"fields": {"timings": result.timings.as_dict()}},
        )

    def _respond(self, request: WorkflowRequest, result: RunResult) -> tuple[dict[str, Any], bytes]:
        files = apply_output_format(result.files, request.output)
        uris = self._upload(result.prompt_id, files) if request.output.return_ == "uri" else None
        body = success_body(result, files, uris=uris)
        if request.id is not None:
            body["id"] = request.id
        # orjson: the same bytes as json.dumps, ten times faster on megabytes of base64.
        return body, orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)

    def _upload(self, prompt_id: str, files: list[OutputFile]) -> dict[str, str]:
        """Every file to gs://OUTBOX/predict/<prompt_id>/, in parallel; relpath -> gs:// URI."""
        base = f"gs://{self.settings.outbox_bucket}/{OUTBOX_PREFIX}/{prompt_id}/"
        uris = {item.relpath: base + _safe_relpath(item.relpath) for item in files}

        def one(item: OutputFile) -> None:
            self.storages.write(uris[item.relpath], item.data, item.content_type)

        if files:
            with ThreadPoolExecutor(max_workers=min(_UPLOAD_WORKERS, len(files))) as pool:
                list(pool.map(one, files))
        return uris


def _light(request: WorkflowRequest, result: RunResult) -> bool:
    """Little enough work to do on the event loop: a thread hop would cost more than it saves."""
    return (
        request.output.format == "png"
        and request.output.return_ == "base64"
        and sum(item.size for item in result.files) <= _INLINE_BYTES
    )


def _safe_relpath(relpath: str) -> str:
    parts = [part for part in PurePosixPath(relpath).parts if part not in ("", ".", "..", "/")]
    return "/".join(parts) or "output"
