"""One /predict request, from parsed document to response body: inputs, the gate, the run, outputs.

Blocking work (fetching inputs, the run itself, image conversion, base64, uploads) happens in
worker threads; the event loop only waits, so /healthz and the disconnect watch stay responsive.
At shutdown that wait ends when the grace does (job/service/shutdown.py): the run is interrupted
in its thread and the caller answered at once.

A run answers at its deadline even when ComfyUI cannot stop the node it runs; until ComfyUI is done
with that prompt (job/comfyui/overrun.py) new requests are refused with a retryable 503, rather
than admitted to wait behind work nobody is waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

import orjson
from starlette.requests import Request

from job.comfyui.outputs import OutputFile
from job.engine.core import Completed, RunOptions, run_request
from job.engine.fetch import reference_fetcher
from job.engine.inputs import gather_inputs
from job.engine.request import WorkflowRequest, parse_json, parse_request
from job.engine.runner import Runner, RunResult
from job.engine.webhook import Notifier
from job.errors import ComfyUnavailable, RunTimeout, ShuttingDown, WorkerError
from job.service.admission import CallerGone, QueueGate
from job.service.disconnect import DisconnectWatch
from job.service.health import Health
from job.service.shutdown import Shutdown
from job.settings import Settings
from job.storage import Storages

log = logging.getLogger(__name__)

OUTBOX_PREFIX = "predict"
_UPLOAD_WORKERS = 8
_WEBHOOK_WORKERS = 4
_WARM_CHECK_S = 0.5  # how soon a restarted ComfyUI gets its warm-up
_GATHER_GRACE_S = 0.75  # past the deadline, how long to wait for fetches that end at it by themselves


class Predictor:
    """Runs requests through the gate on the shared runner."""

    def __init__(
        self, settings: Settings, runner: Runner, storages: Storages, gate: QueueGate, shutdown: Shutdown
    ) -> None:
        self.settings = settings
        self.shutdown = shutdown
        self.runner = runner
        self.storages = storages
        self.gate = gate
        self.fetch = reference_fetcher(settings, storages)
        self.notifier = Notifier.configured(settings)
        # Webhooks of sync requests go out after the response, on threads the interpreter waits for
        # at exit: a shutdown still delivers them (each bounded by WEBHOOK_TIMEOUT_S).
        self._webhooks = ThreadPoolExecutor(max_workers=_WEBHOOK_WORKERS, thread_name_prefix="webhook")

    async def answer(self, http: Request, request: WorkflowRequest) -> bytes | None:
        """`predict` for the caller of `http`, watched for hanging up: None when it went away (its
        prompt is cancelled then, and there is nobody to answer)."""
        try:
            async with DisconnectWatch(http) as caller:
                return await self.predict(request, caller)
        except CallerGone:
            log.info("the caller went away; its prompt was cancelled")
            return None

    async def predict(self, request: WorkflowRequest, caller: DisconnectWatch) -> bytes:
        """The contract's sync response body, rendered as JSON; WorkerError or CallerGone otherwise.

        A `webhook` in the request gets the same document, success or error, signed, after the response.
        """
        try:
            completed, rendered = await self.execute(request, caller, render=True)
        except WorkerError as exc:
            self._notify(request, exc.to_body(), key=str(uuid.uuid4()))
            raise
        body = completed.body
        log.info(
            "predict done: prompt %s, %d image(s), %d other file(s), %d bytes",
            completed.result.prompt_id,
            len(body["images"]),
            len(body["files"]),
            len(rendered),
            extra={"fields": {"prompt_id": completed.result.prompt_id, "timings": body["timings"]}},
        )
        self._notify(request, body, key=completed.result.prompt_id)
        return rendered

    def _notify(self, request: WorkflowRequest, document: dict[str, Any], *, key: str) -> None:
        """Send `document` to the request's webhook in the background; the outcome is logged."""
        if request.webhook:
            self._webhooks.submit(self.notifier.send, request.webhook, document, key=f"predict:{key}")

    async def execute(
        self, request: WorkflowRequest, caller: DisconnectWatch, *, render: bool = False
    ) -> tuple[Completed, bytes]:
        """Admission, inputs, the slot, then the request core in one worker thread: the finished request,
        and with `render` its body as JSON bytes (orjson: ten times json.dumps on megabytes of base64)."""
        timeout_s = request.timeout_s or self.settings.run_timeout_s
        deadline = time.monotonic() + timeout_s
        await self._refuse_while_finishing()
        async with self.gate.admit():
            if request.images or request.inputs:
                fetching = self._gather(request, deadline, caller)
                inputs = await self.shutdown.unless_cut(fetching, caller.cancel.set)
            else:
                inputs = {}
            async with self.gate.slot(deadline, caller.gone):
                options = RunOptions(
                    timeout_s=max(deadline - time.monotonic(), 0.001),
                    cancel=caller.cancel,
                    inputs=inputs,
                    fetch=self.fetch,
                )
                publish = self._upload if request.output.return_ == "uri" else None

                def execute_and_render() -> tuple[Completed, bytes]:
                    completed = run_request(request, self.runner, options, publish)
                    rendered = orjson.dumps(completed.body, option=orjson.OPT_NON_STR_KEYS) if render else b""
                    return completed, rendered

                try:
                    # At the cut, `cancel` makes the run's thread interrupt ComfyUI and end by itself.
                    return await self.shutdown.unless_cut(asyncio.to_thread(execute_and_render), caller.cancel.set)
                except ShuttingDown:
                    raise
                except WorkerError:
                    if caller.cancel.is_set():
                        raise CallerGone from None
                    raise

    async def _refuse_while_finishing(self) -> None:
        """ComfyUnavailable (503, Retry-After) while ComfyUI still runs a prompt whose run is over.

        The marker alone decides when there is none (no I/O); when there is one, ComfyUI's queue is
        read once, so a prompt that ended a moment ago does not turn a request away."""
        if self.runner.overruns.current() is None:
            return
        overrun = await asyncio.to_thread(self.runner.overruns.confirm)
        if overrun is not None:
            raise ComfyUnavailable(
                f"{overrun.describe()}; this instance takes new requests once it is done: retry after Retry-After"
            )

    async def _gather(self, request: WorkflowRequest, deadline: float, caller: DisconnectWatch) -> dict[str, bytes]:
        """gather_inputs on a daemon thread (no shutdown waits for it), every fetch ending by the request's
        deadline. The wait ends then too, or at once when the caller leaves: either way the request's
        queue place is freed, whatever an input server does."""
        loop = asyncio.get_running_loop()
        gathered: asyncio.Future[dict[str, bytes]] = loop.create_future()

        def settle(result: dict[str, bytes] | None, error: BaseException | None) -> None:
            if gathered.done():
                return
            if error is not None:
                gathered.set_exception(error)
            else:
                gathered.set_result(result or {})

        def gather() -> None:
            result: dict[str, bytes] | None = None
            error: BaseException | None = None
            try:
                result = gather_inputs(request, self.fetch, deadline=deadline, cancel=caller.cancel)
            except BaseException as exc:  # raised on the event loop, in the request's own task
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=gather, name="inputs", daemon=True).start()
        gone = asyncio.ensure_future(caller.gone.wait())
        try:
            limit = max(deadline - time.monotonic(), 0) + _GATHER_GRACE_S
            waited: set[asyncio.Future[Any]] = {gathered, gone}
            await asyncio.wait(waited, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if gathered.done():
            return gathered.result()
        gathered.add_done_callback(lambda future: future.exception())  # retrieved: never logged as lost
        if caller.gone.is_set():
            raise CallerGone
        raise RunTimeout(
            f"input(s) {sorted(request.inputs)} did not arrive before the request's deadline (timeout_s); "
            "raise timeout_s, or serve them faster"
        )

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
            completed, _ = await self.execute(request, DisconnectWatch(None))
        except WorkerError as exc:
            health.warmup, health.warmup_error = "failed", exc.message
            log.error("warm-up workflow %s failed: %s", uri, exc.message)
            return
        health.warmup, health.warmed_generation = "done", generation
        log.info(
            "warm-up workflow %s done (ComfyUI boot %d)",
            uri,
            generation,
            extra={"fields": {"timings": completed.result.timings.as_dict()}},
        )

    def _upload(self, files: list[OutputFile], result: RunResult) -> dict[str, str]:
        """Every file to gs://OUTBOX/predict/<prompt_id>/, in parallel; relpath -> gs:// URI."""
        base = f"gs://{self.settings.outbox_bucket}/{OUTBOX_PREFIX}/{result.prompt_id}/"
        uris = {item.relpath: base + _safe_relpath(item.relpath) for item in files}

        def upload_one(item: OutputFile) -> None:
            self.storages.write(uris[item.relpath], item.data, item.content_type)

        if files:
            with ThreadPoolExecutor(max_workers=min(_UPLOAD_WORKERS, len(files))) as pool:
                list(pool.map(upload_one, files))
        return uris


def _safe_relpath(relpath: str) -> str:
    parts = [part for part in PurePosixPath(relpath).parts if part not in ("", ".", "..", "/")]
    return "/".join(parts) or "output"
