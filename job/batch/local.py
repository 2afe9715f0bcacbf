"""A whole batch on this machine (`worker-comfyui batch run`): N tasks as threads on one ComfyUI.

On Cloud Run each task is a container with its own GPU and ComfyUI. Here the tasks share the one
ComfyUI (booted once, or attached via COMFYUI_URL), which runs one prompt at a time: more tasks only
keep its queue full, and each task's share, markers and summary behave exactly as in the cloud.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from job.batch.task import BatchTask, ItemCallback, PreparedBatch, TaskReport, ensure_manifest
from job.engine.boot import comfyui_runner
from job.items.work_item import TaskPlace
from job.settings import Settings
from job.storage import Storages


def run_local_batch(
    prepared: PreparedBatch,
    settings: Settings,
    storages: Storages,
    *,
    tasks: int,
    on_item: ItemCallback | None = None,
) -> list[TaskReport]:
    """Run every pending item of the batch as `tasks` tasks; reports in task order."""
    ensure_manifest(prepared)
    place = TaskPlace.of(settings)
    workers = [
        BatchTask(prepared, settings, storages, replace(place, index=index, count=tasks), on_item=on_item)
        for index in range(tasks)
    ]
    finished = prepared.folder.finished_items()
    pending = [worker.pending(finished) for worker in workers]
    if not any(pending):
        return [worker.run(None, []) for worker in workers]
    with comfyui_runner(settings) as runner, ThreadPoolExecutor(max_workers=tasks) as pool:
        futures = [pool.submit(worker.run, runner, share) for worker, share in zip(workers, pending, strict=True)]
        try:
            return [future.result() for future in futures]
        except BaseException:  # Ctrl-C or SIGTERM: let each task finish its item, then stop
            for worker in workers:
                worker.stop.set()
            raise
