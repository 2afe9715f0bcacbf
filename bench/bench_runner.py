"""Runner overhead: the same graph run N times directly against ComfyUI and through `Runner.run`, interleaved.

    python bench/bench_runner.py [--n 30] [--comfyui-url http://127.0.0.1:8188]

Each run gets its own color so ComfyUI's cache never answers for it; the order inside each pair
alternates so neither side profits from going second. Goals: runner/direct <= 1.5 on the 64-px
graph and <= 1.15 on the 4x512-px batch. Not a test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.comfy import bench_settings, booted
from bench.direct import DirectClient
from bench.pairs import interleaved, ratio_figures
from job.engine.runner import Runner

_colors = itertools.count(1)


def graph(size: int, batch: int) -> dict[str, Any]:
    """EmptyImage -> SaveImage with a color no earlier run used (a cache miss every time)."""
    color = next(_colors) & 0xFFFFFF
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": batch, "color": color},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}},
    }


def timed(fn: Callable[[], int], expected: int) -> float:
    started = time.perf_counter()
    files = fn()
    elapsed = time.perf_counter() - started
    if files != expected:
        raise RuntimeError(f"expected {expected} file(s), got {files}")
    return elapsed


def compare(label: str, n: int, size: int, batch: int, direct: DirectClient, runner: Runner) -> dict[str, float]:
    def via_direct() -> int:
        return len(direct.run(graph(size, batch)))

    def via_runner() -> int:
        return len(runner.run(graph(size, batch), timeout_s=300).files)

    for fn in (via_direct, via_runner):  # warm both paths (imports, connections, ComfyUI's first run)
        timed(fn, batch)
    direct_s, runner_s = interleaved(n, lambda: timed(via_direct, batch), lambda: timed(via_runner, batch))
    figures = ratio_figures(direct_s, runner_s, "runner")
    print(
        f"{label:<12} n={n:<3} direct {figures['direct_ms']:8.1f} ms   runner {figures['runner_ms']:8.1f} ms   "
        f"ratio of medians {figures['ratio_of_medians']:.3f}   median ratio {figures['median_ratio']:.3f}",
        flush=True,
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="pairs per graph (default 30)")
    parser.add_argument("--comfyui-url", help="attach to this ComfyUI instead of booting one")
    parser.add_argument("--only", choices=["64", "4x512"], help="run one of the two graphs")
    args = parser.parse_args(argv)

    goals = {"64px": (64, 1, 1.5), "4x512px": (512, 4, 1.15)}
    if args.only:
        goals = {k: v for k, v in goals.items() if k.startswith(args.only)}
    with tempfile.TemporaryDirectory(prefix="bench-comfy-") as base:
        settings = bench_settings(Path(base), args.comfyui_url)
        with booted(settings) as server, DirectClient(server.base_url) as direct:
            runner = Runner(server)
            try:
                missed = []
                for label, (size, batch, goal) in goals.items():
                    figures = compare(label, args.n, size, batch, direct, runner)
                    if figures["median_ratio"] > goal:
                        missed.append(f"{label}: {figures['median_ratio']:.3f} > {goal}")
            finally:
                runner.close()
    print("goals met" if not missed else "goals missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
