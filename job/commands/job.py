"""`worker-comfyui job`: the Cloud Run job's command; one inbox item in, its outbox folder out.

While ComfyUI is warm the task then runs further pending inbox items (job/items/drain.py); with
DRAIN=true it runs only those, and exits before booting ComfyUI when there are none.

Exit status: 0 when the item is finished (a result, an error result, or nothing to do), 1 when
the task should be retried (infrastructure failure), 2 when the configuration is wrong.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from job.comfyui.process import ComfyServer
from job.errors import ConfigurationError, WorkerError
from job.settings import Settings
from job.subprocesses import exit_on_sigterm

log = logging.getLogger(__name__)

_YIELD_TO_COMFYUI = 10  # niceness for the job's own threads; ComfyUI keeps the default


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "job",
        help="run one inbox item (REQUEST_URI) and write its outputs and result.json (OUTBOX_URI)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("request", nargs="?", help="overrides REQUEST_URI: gs://INBOX/name.json#generation or a path")
    parser.add_argument("--outbox", help="overrides OUTBOX_URI: gs://OUTBOX/path/name/ or a folder")
    parser.set_defaults(func=job_command)


def job_command(args: argparse.Namespace, settings: Settings) -> int:
    exit_on_sigterm()
    request_uri = args.request or settings.request_uri  # this task's values, read once here
    outbox_uri = args.outbox or settings.outbox_uri
    if settings.batch_uri:  # a batch task (Cloud Scheduler, or a .batch.json drop): its share of the items
        from job.commands.batch import batch_task_command

        return batch_task_command(settings, outbox_uri)
    # A task with an item of its own boots ComfyUI anyway: start it now, so its boot overlaps the
    # imports below (storage, fetch, webhook: about a second). A sweep (DRAIN=true) may not boot at all.
    installed = settings.comfyui_url is not None or (settings.comfyui_dir / "main.py").is_file()
    server = None
    if request_uri and not settings.drain and installed:
        try:
            server = ComfyServer(settings.comfyui()).start()
        except WorkerError as exc:  # e.g. MODELS_MOUNT unusable: the item's own boot fails again, into result.json
            log.warning("could not start ComfyUI early: %s", exc.message)
        else:
            # ComfyUI's boot is the critical path; this thread's work meanwhile (imports, the request,
            # input fetches) is not. Linux keeps priorities per thread: ComfyUI, spawned from the
            # supervisor thread, keeps its own, while this thread and those it starts yield to it
            # (bench/bench_pipeline.py compares the job's boot with a bare one).
            os.nice(_YIELD_TO_COMFYUI)
    try:
        from job.items.drain import run_task  # the storage and ComfyUI stack, loaded only for this command

        # its own item, then pending ones (DRAIN=true: only those)
        return run_task(settings, request_uri, outbox_uri, server=server)
    except ConfigurationError as exc:
        log.error("configuration: %s", exc.message)
        return 2
    except WorkerError as exc:  # not even an error result.json could be written (e.g. no access to the outbox)
        log.error("the item could not be finished: %s (%s)", exc.message, exc.error_type)
        return 1
    finally:
        if server is not None:
            server.stop()  # idempotent: normally the runner stopped it already
