"""POST /predict against direct ComfyUI, interleaved in one run, on the same ComfyUI.

    python bench/bench_predict.py [--n 30] [--comfyui-url http://127.0.0.1:8188] [--solid]

- direct: `bench/direct.py` (POST /prompt, websocket wait, /history, /view): raw bytes in hand.
- predict: `worker-comfyui serve` in its own process with its ComfyUI as its child, as deployed
  (direct talks to that same ComfyUI); the client posts the workflow, parses the JSON and decodes
  the base64: the same bytes in hand. `--comfyui-url` makes the service attach to a ComfyUI instead.

Graphs: 64 px (EmptyImage -> SaveImage: the fixed overhead; goal <= 1.5x) and a 4x512-px batch
(EmptyImage -> ImageAddNoise -> SaveImage, so the PNGs weigh what real pictures weigh and base64
costs what it really costs; goal <= 1.15x; `--solid` drops the noise). Each run has its own color
or seed, so ComfyUI's cache never answers; pairs alternate which side goes first. Prints medians
and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.direct import DirectClient
from bench.pairs import interleaved, ratio_figures
from job.devstack.gcs_emulator import free_port

_unique = itertools.count(1)


def graph(size: int, batch: int, *, noise: bool) -> dict[str, Any]:
    """A model-free graph no earlier run used (a cache miss every time)."""
    n = next(_unique)
    nodes: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": batch, "color": n}},
    }
    source = "1"
    if noise:
        nodes["2"] = {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": n, "strength": 0.5}}
        source = "2"
    nodes["9"] = {"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": "bench"}}
    return nodes


@contextmanager
def service(comfyui_url: str | None) -> Iterator[tuple[str, str]]:
    """`worker-comfyui serve` in its own process until healthy: (its URL, its ComfyUI's URL).

    As deployed, the service boots ComfyUI as its child (and so reads outputs from its disk);
    with `comfyui_url` it attaches to that ComfyUI instead.
    """
    port, comfy_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-comfy-") as base, tempfile.TemporaryFile() as log:
        env = {
            **os.environ,
            "PORT": str(port),
            "LOG_FORMAT": "json",
            "COMFYUI_PORT": str(comfy_port),
            "COMFYUI_ARGS": f"--base-directory {base} --disable-all-custom-nodes",
            "COMFY_LOG_LEVEL": "WARNING",
        }
        if comfyui_url:
            env["COMFYUI_URL"] = comfyui_url
        proc = subprocess.Popen(
            [sys.executable, "-m", "job", "serve", "--host", "127.0.0.1"], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the service did not come up:\n{log.read().decode()[-3000:]}")
                time.sleep(0.1)
            yield url, comfyui_url or f"http://127.0.0.1:{comfy_port}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def timed(fn: Callable[[], list[bytes]], expected: int) -> tuple[float, int]:
    started = time.perf_counter()
    files = fn()
    elapsed = time.perf_counter() - started
    if len(files) != expected:
        raise RuntimeError(f"expected {expected} file(s), got {len(files)}")
    return elapsed, sum(len(data) for data in files)


def compare(
    label: str, n: int, size: int, batch: int, noise: bool, direct: DirectClient, http: httpx.Client
) -> dict[str, float]:
    def via_direct() -> list[bytes]:
        return direct.run(graph(size, batch, noise=noise))

    def via_predict() -> list[bytes]:
        response = http.post("/predict", json={"workflow": graph(size, batch, noise=noise)})
        response.raise_for_status()
        return [base64.b64decode(image["image"]) for image in response.json()["images"]]

    for fn in (via_direct, via_predict):  # warm both paths (connections, ComfyUI's first run)
        timed(fn, batch)
    payload = 0

    def timed_predict() -> float:
        nonlocal payload
        elapsed, payload = timed(via_predict, batch)
        return elapsed

    direct_s, predict_s = interleaved(n, lambda: timed(via_direct, batch)[0], timed_predict)
    figures = ratio_figures(direct_s, predict_s, "predict")
    print(
        f"{label:<8} n={n:<3} {payload / 1024:7.0f} KiB   direct {figures['direct_ms']:8.1f} ms   "
        f"predict {figures['predict_ms']:8.1f} ms   ratio of medians {figures['ratio_of_medians']:.3f}   "
        f"median ratio {figures['median_ratio']:.3f}",
        flush=True,
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="pairs per graph (default 30)")
    parser.add_argument("--comfyui-url", help="attach the service to this ComfyUI instead of its own child")
    parser.add_argument("--solid", action="store_true", help="4x512 without noise (tiny PNGs)")
    args = parser.parse_args(argv)

    cases = {"64px": (64, 1, False, 1.5), "4x512px": (512, 4, not args.solid, 1.15)}
    missed = []
    with (
        service(args.comfyui_url) as (url, comfy_url),
        DirectClient(comfy_url) as direct,
        httpx.Client(base_url=url, timeout=300) as http,
    ):
        for label, (size, batch, noise, goal) in cases.items():
            figures = compare(label, args.n, size, batch, noise, direct, http)
            if figures["median_ratio"] > goal:
                missed.append(f"{label}: {figures['median_ratio']:.3f} > {goal}")
    print("goals met" if not missed else "goals missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
