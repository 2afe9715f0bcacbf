"""`worker-comfyui dev` as a person runs it: a process that starts everything, says where each part
listens, runs the demo, refuses a taken port by naming its flag, and leaves nothing behind on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from job.client.local_stack import STATE_FILE, StackInfo
from job.client.submission import OutboxWatch, upload
from tests.support.comfy import slow_workflow

ANY_PORTS = [arg for flag in ("gcs", "comfyui", "function", "run-api", "service") for arg in (f"--{flag}-port", "0")]


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("COMFYUI_URL", "COMFYUI_PORT")}
    env.update(extra)
    return env


def _processes_naming(text: str) -> list[psutil.Process]:
    """Live processes whose command line mentions `text` (a test's own temporary folder)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if text in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE and process.pid != os.getpid():
            found.append(process)
    return found


def test_a_taken_port_is_refused_with_the_flag_that_changes_it(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        done = subprocess.run(
            [sys.executable, "-m", "job", "dev", "--data-dir", str(tmp_path), *ANY_PORTS, "--function-port", str(port)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 (the function) is already in use" in done.stderr
    assert "--function-port" in done.stderr
    assert not _processes_naming(str(tmp_path))


def test_a_task_that_boots_its_own_comfyui_becomes_worker_comfyui_job(tmp_path):
    """`--job-boots-comfyui` launches `python -m job.devstack.task`: a free COMFYUI_PORT, then exec `job`."""
    env = {key: value for key, value in _env().items() if key not in ("REQUEST_URI", "OUTBOX_URI")}

    done = subprocess.run(
        [sys.executable, "-m", "job.devstack.task"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 2  # the job command's "configuration is wrong"
    assert "REQUEST_URI is not set" in done.stderr


@pytest.mark.comfyui
@pytest.mark.slow
def test_demo_sends_the_example_through_the_inbox_prints_the_outputs_and_stops(tmp_path, comfy_server):
    data = tmp_path / "dev"

    done = subprocess.run(
        [sys.executable, "-m", "job", "dev", "--demo", "--data-dir", str(data)],
        env=_env(COMFYUI_URL=comfy_server.base_url),  # the session's ComfyUI: no second boot
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("function") and "http://127.0.0.1:" in line for line in lines)
    assert any(line.startswith("inbox:  gs://inbox/demo/invert_input-") for line in lines)
    [output] = [line for line in lines if line.startswith("out/demo/")]
    assert (tmp_path / output).read_bytes()[:4] == b"\x89PNG"
    assert not (data / STATE_FILE).exists()
    assert not _processes_naming(str(data))


@pytest.mark.comfyui
@pytest.mark.slow
def test_sigint_stops_every_process_the_stack_started(tmp_path):
    data = tmp_path / "dev"
    out = tmp_path / "stdout.txt"
    with out.open("w") as stdout, (tmp_path / "stderr.txt").open("w") as stderr:
        dev = subprocess.Popen(
            [sys.executable, "-m", "job", "dev", "--data-dir", str(data), *ANY_PORTS],
            env=_env(COMFYUI_ARGS="--disable-all-custom-nodes", LOG_FORMAT="json"),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # a process group of its own, like a shell job
        )
    try:
        deadline = time.monotonic() + 240
        while "ready:" not in out.read_text():
            assert dev.poll() is None, (tmp_path / "stderr.txt").read_text()[-4000:]
            assert time.monotonic() < deadline, "the stack never said ready"
            time.sleep(0.2)

        # A job mid-run, so its process is among those that must go.
        info = StackInfo.load(data)
        client = info.storage_client()
        submitted = upload(
            client,
            {"workflow": slow_workflow(blurs=60)},
            inbox_bucket=info.inbox_bucket,
            name="slow.json",
            outbox_bucket=info.outbox_bucket,
        )
        watch = OutboxWatch(client, submitted)
        while (watch.status() or {}).get("state") != "running":
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.1)

        started = psutil.Process(dev.pid).children(recursive=True)
        commands = " ".join(" ".join(child.cmdline()) for child in started)
        for part in ("fake-gcs-server", "main.py", "functions_framework", "job serve", "job job"):
            assert part in commands, f"{part} is not running: {commands}"

        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
        assert dev.wait(timeout=60) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()

    _, alive = psutil.wait_procs(started, timeout=15)
    assert alive == []
    assert not (data / STATE_FILE).exists()
    assert "stopping the dev stack" in (tmp_path / "stderr.txt").read_text()
