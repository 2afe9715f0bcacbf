"""The inbox pipeline's own cost: event -> result.json, less ComfyUI's boot and execution.

    python bench/bench_pipeline.py [--rounds 3] [--input-px 1024]

Each round drops a request (LoadImage of a gs:// input -> ImageInvert -> SaveImage) into the
inbox of a local fake-gcs-server and delivers its finalized CloudEvent to the trigger function as
functions-framework serves it. The function calls `jobs.run` over REST on the Admin API stand-in,
which starts `worker-comfyui job` as a process; the bench watches the outbox until result.json
appears (a stat of the emulator's data folder, which costs the booting ComfyUI no CPU). In the
same round a bare ComfyUI child is booted to readiness (same arguments, its own base directory)
to measure the boot, and ComfyUI's execution time is read from result.json:

    overhead = (event -> result.json) - bare boot - execution

Boots vary by a second or more from one to the next, so the bench also prints the overhead around
the job's own boot (less the boot the job's ComfyUI took, spawn to first answer, as result.json
records it) and how much slower that boot was than the bare one (on a small machine, the job's
own imports and input fetch share the CPU with ComfyUI's boot).

The goal is an overhead <= 1 s, with the input fetched while ComfyUI boots. Not a test: it prints
figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import functions_framework
from PIL import Image

from bench.comfy import bench_settings, booted
from job.devstack.gcs_emulator import GcsEmulator
from job.devstack.run_api import RunApiStandin
from job.settings import Settings
from tests.support.gcs_events import finalized_event, post_event

REPO = Path(__file__).resolve().parents[1]
PROJECT = "local-project"
JOB_VARS = ("REQUEST_URI", "OUTBOX_URI", "COMFYUI_URL", "CLOUD_RUN_TASK_ATTEMPT", "STORAGE_EMULATOR_HOST")


def bare_boot(base: Path) -> float:
    """Seconds from spawning a ComfyUI child to its first answer."""
    with booted(bench_settings(base)) as server:
        assert server.boot_s is not None
        return server.boot_s


def input_png(px: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((px, px), 64).convert("RGB").save(buffer, format="PNG")  # noise: no trivial compression
    return buffer.getvalue()


def request(inbox: str) -> dict[str, Any]:
    return {
        "workflow": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}},
        },
        "inputs": {"photo.png": f"gs://{inbox}/assets/photo.png"},
    }


def job_env(gcs: GcsEmulator, settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in JOB_VARS}
    env.update(
        gcs.env(),
        GOOGLE_CLOUD_PROJECT=PROJECT,
        LOG_FORMAT="json",
        COMFY_LOG_LEVEL="WARNING",
        COMFYUI_DIR=str(settings.comfyui_dir),
        COMFYUI_PORT=str(settings.comfyui_port),
        COMFYUI_ARGS=settings.comfyui_args,
        DRAIN_MAX_ITEMS="1",  # no grace period for further inbox items after result.json: not measured
    )
    return env


def one_round(index: int, gcs: GcsEmulator, client: Any, png: bytes, scratch: Path) -> dict[str, float]:
    """One pipeline run; the bare boot is timed before it on even rounds and after it on odd ones."""
    boot_s = bare_boot(scratch / f"boot-{index}") if index % 2 == 0 else 0.0
    inbox = client.bucket(f"inbox-{index}")
    gcs.create_bucket(inbox.name)
    inbox.blob("assets/photo.png").upload_from_string(png, content_type="image/png")
    blob = inbox.blob(f"bench/round-{index}.json")
    blob.upload_from_string(json.dumps(request(inbox.name)), content_type="application/json")
    event = finalized_event(inbox.name, blob.name, blob.generation, blob.size)
    result_blob = client.bucket("outbox").blob(f"bench/round-{index}/result.json")
    result_file = gcs.root / "data" / "outbox" / "bench" / f"round-{index}" / "result.json"  # filesystem backend
    env = job_env(gcs, bench_settings(scratch / f"job-{index}"))

    with RunApiStandin(launch=True, base_env=env, cwd=REPO) as api:
        os.environ.update(gcs.env(), RUN_API_ENDPOINT=api.url, GOOGLE_CLOUD_PROJECT=PROJECT)
        app = functions_framework.create_app("on_inbox_object", str(REPO / "trigger" / "main.py"), "cloudevent")
        test_client = app.test_client()
        started = time.perf_counter()
        response = post_event(test_client, event, mode="binary")
        function_s = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"the function answered {response.status_code}: {response.data[:300]!r}")
        # A stat of the emulator's data folder every 5 ms: unlike HTTP polls, it takes no CPU from the boot.
        while not result_file.exists():
            if time.perf_counter() - started > 300:
                raise RuntimeError("no result.json after 300 s")
            time.sleep(0.005)
        event_to_result_s = time.perf_counter() - started
        [execution] = api.executions()
        api.wait(execution.name, timeout=60)
    if index % 2:
        boot_s = bare_boot(scratch / f"boot-{index}")
    result = json.loads(result_blob.download_as_bytes())
    if result["status"] != "success":
        raise RuntimeError(f"the job failed: {result.get('error')}")
    timings = result["timings"]
    overhead = event_to_result_s - boot_s - timings["execution_s"]
    return {
        "event_to_result_s": event_to_result_s,
        "bare_boot_s": boot_s,
        "execution_s": timings["execution_s"],
        "overhead_s": overhead,
        # the same less the boot of the job's own ComfyUI: what the pipeline adds around a boot
        "overhead_around_boot_s": event_to_result_s - timings["boot_s"] - timings["execution_s"],
        "job_boot_s": timings["boot_s"],
        "function_s": function_s,
        "prepare_s": timings["prepare_s"],
        "run_total_s": timings["total_s"],
        "upload_s": timings["upload_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="even: bare boots alternate before and after")
    parser.add_argument("--input-px", type=int, default=1024, help="side of the noise PNG fetched from gs://")
    args = parser.parse_args()
    os.environ.update(FUNCTION_TARGET="on_inbox_object", FUNCTION_SIGNATURE_TYPE="cloudevent")
    for name in ("OUTBOX_PREFIX", "CLAIMS_PREFIX", "OUTBOX_BUCKET", "JOB_NAME", "REGION"):
        os.environ.pop(name, None)
    png = input_png(args.input_px)
    print(
        f"input: {args.input_px}x{args.input_px} PNG, {len(png) / 1e6:.2f} MB, fetched from gs:// while ComfyUI boots"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        scratch = Path(tmp)
        with GcsEmulator(scratch / "gcs", buckets=["outbox"], project=PROJECT) as gcs:
            client = gcs.client()
            for index in range(args.rounds):
                row = one_round(index, gcs, client, png, scratch)
                rows.append(row)
                print(f"round {index + 1}: " + "  ".join(f"{key} {value:.3f}" for key, value in row.items()))
    print("\nmedian over rounds (seconds):")
    for key in rows[0]:
        print(f"  {key:<18} {statistics.median(row[key] for row in rows):8.3f}")
    overhead = statistics.median(row["overhead_s"] for row in rows)
    around = statistics.median(row["overhead_around_boot_s"] for row in rows)
    slowdown = statistics.median(row["job_boot_s"] - row["bare_boot_s"] for row in rows)
    print(f"\noverhead (event -> result.json, less bare boot and execution): {overhead:.3f} s (goal <= 1 s)")
    print(f"  around the boot (less the job's own ComfyUI boot instead):  {around:.3f} s")
    print(f"  the job's ComfyUI boot less the bare boot:                   {slowdown:+.3f} s")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()
