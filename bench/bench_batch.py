"""Batch overhead per item: one task running N items of a model-free graph on a single ComfyUI boot.

    python bench/bench_batch.py [--items 50] [--outbox gcs|local] [--comfyui-url URL]

One ComfyUI is booted (or attached to) and stays up; everything below runs in this process on it:

  direct   the N graphs through bench.direct.DirectClient (queue, websocket, /history, /view):
           the floor, what any wrapper can only add to; run before and after the batch
  batch    an N-item batch spec run by one task (job.batch.task.BatchTask): each item as an inbox
           drop runs, with its outputs, status.json and result.json written to a fake-gcs-server
           bucket (or a local folder), then the task's marker and summary.json

Every graph gets a color of its own, so ComfyUI's cache never answers for it. Figures:

  overhead vs execution = (the task's item loop - sum of ComfyUI's execution_s in result.json) / N
  overhead vs direct    = (the task's item loop - the mean direct wall) / N

The goal is <= 50 ms per item. Not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.comfy import bench_settings, booted
from bench.direct import DirectClient
from job.batch.task import BatchTask, ensure_manifest, prepare_batch
from job.comfyui.process import ComfyServer
from job.devstack.gcs_emulator import GcsEmulator
from job.engine.runner import Runner
from job.items.work_item import TaskPlace
from job.settings import Settings
from job.storage import Storages

PROJECT = "local-project"


def graph(color: int, size: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}},
    }


@contextmanager
def outbox(kind: str, scratch: Path) -> Iterator[str]:
    """The batch prefix: a bucket on a fresh fake-gcs-server, or a local folder."""
    if kind == "local":
        yield str(scratch / "out") + "/"
        return
    with GcsEmulator(scratch / "gcs", buckets=["outbox"], project=PROJECT) as gcs:
        os.environ.update(gcs.env())
        try:
            yield "gs://outbox/bench/"
        finally:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)


def direct_run(client: DirectClient, colors: range, size: int) -> float:
    started = time.perf_counter()
    for color in colors:
        if len(client.run(graph(color, size))) != 1:
            raise RuntimeError("expected one output file")
    return time.perf_counter() - started


def batch_run(server: ComfyServer, settings: Settings, scratch: Path, prefix: str, colors: range, size: int) -> dict:
    spec = {"id": "bench", "workflow": graph(0, size), "grid": {"1": {"color": list(colors)}}, "prefix": prefix}
    path = scratch / "bench.batch.json"
    path.write_text(json.dumps(spec))
    storages = Storages(PROJECT)
    started = time.perf_counter()
    prepared = prepare_batch(str(path), storages, settings)
    ensure_manifest(prepared)
    task = BatchTask(prepared, settings, storages, TaskPlace.of(settings))
    pending = task.pending(prepared.folder.finished_items())
    setup_s = time.perf_counter() - started
    runner = Runner(server)
    try:
        report = task.run(runner, pending)
    finally:
        runner.close()
    total_s = time.perf_counter() - started
    if report.outcomes != {"succeeded": len(colors)}:
        raise RuntimeError(f"the batch did not succeed: {dict(report.outcomes)}")
    results = prepared.folder.read_results(item.id for item in prepared.items)
    timings = [result["timings"] for result in results.values()]
    return {
        "setup_s": setup_s,  # load, plan, manifest, listing
        "loop_s": report.wall_s,  # the items, one after another
        "finish_s": total_s - setup_s - report.wall_s,  # marker and summary.json
        "execution_s": sum(t["execution_s"] for t in timings),
        "item_job_ms": statistics.median(t["job_s"] for t in timings) * 1000,
        "item_upload_ms": statistics.median(t["upload_s"] for t in timings) * 1000,
    }


def one_round(
    index: int, n: int, size: int, server: ComfyServer, settings: Settings, scratch: Path, prefix: str
) -> dict:
    """direct, batch, direct: each on colors no other run used."""
    base = 10_000 * (index + 1)
    with DirectClient(server.base_url) as direct:
        direct_run(direct, range(base, base + 3), size)  # warm up: imports, connections, ComfyUI's first run
        before = direct_run(direct, range(base + 1000, base + 1000 + n), size)
        folder = scratch / f"round-{index}"
        folder.mkdir()
        batch = batch_run(
            server, settings, folder, f"{prefix}round-{index}/", range(base + 2000, base + 2000 + n), size
        )
        after = direct_run(direct, range(base + 3000, base + 3000 + n), size)
    batch["direct_s"] = (before + after) / 2
    batch["vs_execution_ms"] = (batch["loop_s"] - batch["execution_s"]) / n * 1000
    batch["vs_direct_ms"] = (batch["loop_s"] - batch["direct_s"]) / n * 1000
    return batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=50, help="items in the batch (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of direct, batch, direct (default 3)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--outbox", choices=["gcs", "local"], default="gcs", help="fake-gcs-server or a folder")
    parser.add_argument("--comfyui-url", help="attach to this ComfyUI instead of booting one")
    args = parser.parse_args(argv)
    n = args.items

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        scratch = Path(tmp)
        settings = bench_settings(scratch / "comfy-base", args.comfyui_url, outbox_uri=None, cloud_run_execution=None)
        with booted(settings) as server, outbox(args.outbox, scratch) as prefix:
            rounds = [one_round(i, n, args.size, server, settings, scratch, prefix) for i in range(args.rounds)]
            boots = server.generation

    print(f"{n} items of a {args.size}-px EmptyImage -> SaveImage graph, outbox {args.outbox}, ComfyUI boots: {boots}")
    for i, r in enumerate(rounds):
        print(
            f"  round {i}: direct {r['direct_s'] / n * 1000:5.1f} ms/item, batch loop {r['loop_s'] / n * 1000:5.1f}, "
            f"execution {r['execution_s'] / n * 1000:4.1f}, item job_s {r['item_job_ms']:4.1f} (upload "
            f"{r['item_upload_ms']:4.1f}); setup {r['setup_s'] * 1000:.0f} ms, finish {r['finish_s'] * 1000:.0f} ms; "
            f"overhead vs execution {r['vs_execution_ms']:5.1f}, vs direct {r['vs_direct_ms']:5.1f}"
        )
    vs_execution = statistics.median(r["vs_execution_ms"] for r in rounds)
    vs_direct = statistics.median(r["vs_direct_ms"] for r in rounds)
    print(f"median overhead vs ComfyUI execution: {vs_execution:.1f} ms per item (goal <= 50)")
    print(f"median overhead vs the direct client: {vs_direct:.1f} ms per item")
    print("goal met" if vs_execution <= 50 else "goal missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
