"""Draining against one execution per item: wall time for a burst of drops, same run, same concurrency.

    python bench/bench_drain.py [--items 30] [--executions 2] [--size 64] [--l4-item-s 10]

Both modes run the whole local pipeline (tests/support/inbox_pipeline.py): fake-gcs-server, the
notifier as Eventarc (redelivering 5xx answers with 0.3-1 s backoff; Eventarc's own is 10 s and
up), the function from trigger/main.py over HTTP, and the Admin API stand-in starting one
`worker-comfyui job` process per execution, each booting its own CPU ComfyUI.

- drained: MAX_EXECUTIONS=--executions; each task runs its own item, then drains the rest.
- one per item: the same MAX_EXECUTIONS, DRAIN_MAX_ITEMS=1; each item is an execution that boots
  ComfyUI, started as redeliveries find room.

It prints the wall time from the first drop to the last result.json, the boots counted in the
tasks' logs, the ratio, and what the same arithmetic gives for an L4's 30-60 s cold start. Not a
test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from job.devstack.gcs_emulator import GcsEmulator
from tests.support.comfy import empty_image_workflow
from tests.support.inbox_pipeline import PROJECT, InboxPipeline, comfy_env


@dataclass(frozen=True)
class Run:
    mode: str
    wall_s: float  # first drop -> last result.json
    boots: int
    executions: int
    drained: int  # items a task ran after its own


def burst(gcs: GcsEmulator, comfy: dict[str, str], mode: str, args: argparse.Namespace) -> Run:
    max_items = args.items + 1 if mode == "drained" else 1
    line = InboxPipeline(gcs, comfy, max_executions=args.executions, drain_max_items=max_items).start()
    try:
        started = time.monotonic()
        names = [line.drop(i, empty_image_workflow(size=args.size, prefix=f"item{i:02d}")) for i in range(args.items)]
        results = line.wait_results(names, timeout=args.timeout)
        wall = time.monotonic() - started
        executions = line.wait_idle(timeout=120)
        drained = sum(1 for result in results.values() if result["execution"].get("drained"))
        return Run(mode, wall, line.task_log.boots(), len(executions), drained)
    finally:
        line.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--executions", type=int, default=2, help="MAX_EXECUTIONS in both modes")
    parser.add_argument("--size", type=int, default=64, help="side of each item's EmptyImage")
    parser.add_argument("--l4-item-s", type=float, default=10.0, help="GPU seconds per item, for the L4 projection")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on a mode after this long")
    args = parser.parse_args()
    # The function logs each 5xx it answers (a traceback too) and werkzeug each request: thousands in a burst.
    quiet = {"trigger": logging.WARNING, "werkzeug": logging.ERROR, "on_inbox_object": logging.CRITICAL}
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        scratch = Path(tmp)
        comfy = comfy_env(scratch / "comfy", api_nodes=True)  # a boot as the image does it
        with GcsEmulator(scratch / "gcs", buckets=["outbox"], project=PROJECT) as gcs:
            for mode in ("drained", "one per item"):
                run = burst(gcs, comfy, mode, args)
                runs.append(run)
                print(
                    f"{run.mode:<13} {args.items} items: {run.wall_s:7.1f} s  ({run.wall_s / args.items:5.2f} s/item)"
                    f"  executions {run.executions}, ComfyUI boots {run.boots}, drained items {run.drained}",
                    flush=True,
                )
    drained, single = runs
    ratio = single.wall_s / drained.wall_s
    print(f"\none execution per item takes {ratio:.1f}x as long as draining ({os.cpu_count()} CPU(s), CPU ComfyUI)")
    # What the boots cost here, from the two runs: each of the N - K extra boots adds about C / K of wall time.
    extra_boots = max(1, single.boots - drained.boots)
    boot_s = (single.wall_s - drained.wall_s) * args.executions / extra_boots
    print(f"a cold start here costs about {boot_s:.1f} s of one execution slot")
    n, k, t = args.items, args.executions, args.l4_item_s
    print(f"\non an L4, {n} items of {t:g} s with MAX_EXECUTIONS={k} (one per item ~ N(C+t)/K, drained ~ C+Nt/K):")
    for cold in (30.0, 60.0):
        one, drain = n * (cold + t) / k, cold + n * t / k
        print(f"  cold start {cold:4.0f} s: one per item {one / 60:6.1f} min, ", end="")
        print(f"drained {drain / 60:6.1f} min ({one / drain:.1f}x)")


if __name__ == "__main__":
    main()
