"""Batch generation: one spec, many items, shared out across a Cloud Run job's tasks.

    spec.py     the batch spec (pydantic), loaded and checked before any work starts
    plan.py     the items (explicit list or grid), their overrides and seeds, each task's share
    folder.py   the batch's prefix: manifest, item folders, task markers, summary.json (GCS or disk)
    item.py     one item run as a single inbox drop runs (job.items.work_item), on the task's warm ComfyUI
    pipeline.py a task's items in turn, the next started as soon as the last has left ComfyUI
    task.py     one task: boot ComfyUI once, run its share, skip what is done, mark itself done
    summary.py  summary.json, written by the task that finishes last (GCS preconditions, no lock server)
    status.py   done, failed and pending counts from a prefix (`worker-comfyui batch status`)
    local.py    a whole batch on this machine, N tasks as threads on one ComfyUI (`batch run`)

docs/batch.md describes the spec and the behaviour for users.
"""
