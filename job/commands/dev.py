"""`worker-comfyui dev`: the whole inbox pipeline on this machine, on loopback, until Ctrl-C.

It starts a GCS emulator (inbox and outbox buckets, files under DATA/gcs), ComfyUI on CPU
(installed the first time), the function from trigger/ under functions-framework, a notifier that
pushes each new inbox object to it as the CloudEvent Eventarc sends, a Cloud Run Admin API
stand-in that runs each execution as a `worker-comfyui job` process, and the /predict service.
Drop a workflow with `worker-comfyui submit WORKFLOW.json --wait`. CPU ComfyUI runs model-free
graphs only; graphs with models need the GPU image.

Jobs attach to the stack's ComfyUI (COMFYUI_URL) so each runs in seconds; on Cloud Run each
execution boots its own, which --job-boots-comfyui reproduces at ~10 s more per job. With
COMFYUI_URL set, the stack uses that ComfyUI instead of starting one.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from job.client.local_stack import StackInfo, StackNotRunning
from job.client.submission import build_request
from job.comfyui.install import InstallError
from job.commands.console import console, print_error
from job.commands.submit import Destination, follow, send
from job.devstack.children import StackError
from job.devstack.gcs_emulator import EmulatorError
from job.devstack.ports import PORT_FLAGS, Ports
from job.devstack.stack import DevStack, StackConfig
from job.errors import WorkerError
from job.settings import Settings
from job.subprocesses import exit_on_sigterm

DEMO_WORKFLOW = "invert_input.json"
DEMO_IMAGE = "input.png"
DEMO_OUT = Path("out/demo")
DEMO_TIMEOUT_S = 600.0
_QUIET_LOGGERS = {"comfyui": "comfyui.log", "job.devstack.run_api": "jobs.log"}  # to files; to the console with -v too


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the whole pipeline locally: GCS emulator, ComfyUI, function, Run API stand-in, service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".dev"), help="buckets, logs, stack.json (default .dev)")
    defaults = Ports()
    for name, (flag, what) in PORT_FLAGS.items():
        parser.add_argument(
            flag,
            type=int,
            metavar="PORT",
            help=f"port of {what} (default {getattr(defaults, name)}, with --demo any free one; 0: any free one)",
        )
    parser.add_argument(
        "--job-boots-comfyui",
        action="store_true",
        help="each job boots its own ComfyUI, as on Cloud Run, instead of attaching to the stack's "
        "(the default, since a CPU boot adds ~10 s to every job)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help=f"start the stack, send workflows/{DEMO_WORKFLOW} with {DEMO_IMAGE} through the inbox, print the "
        f"outputs' paths (under {DEMO_OUT}/), stop; uses a stack already running on --data-dir if there is one",
    )
    parser.set_defaults(func=dev_command)


def dev_command(args: argparse.Namespace, settings: Settings) -> int:
    exit_on_sigterm()
    config = StackConfig(
        settings=settings,
        environ=dict(os.environ),
        data_dir=args.data_dir,
        ports=_ports(args),
        job_boots_comfyui=args.job_boots_comfyui,
    )
    if args.demo:
        try:
            running = StackInfo.load(args.data_dir)
        except StackNotRunning:
            pass
        else:
            console.print(f"using the dev stack already running (pid {running.pid})", highlight=False)
            return _demo(running)
    _route_logs(config.data_dir.resolve() / "logs", verbose=args.verbose)
    stack = DevStack(config)
    try:
        stack.start()
        _print_components(stack)
        if args.demo:
            assert stack.info is not None
            return _demo(stack.info, check=stack.check)
        print(
            "ready: drop workflows into the inbox, e.g. `worker-comfyui submit workflows/invert_input.json "
            "--image input.png=workflows/input.png --wait`; Ctrl-C stops everything",
            flush=True,
        )
        while True:
            stack.check()
            time.sleep(0.25)
    except KeyboardInterrupt:
        console.print("stopping the dev stack")
        return 0
    except (StackError, EmulatorError, InstallError) as exc:
        console.print(f"[red]error[/red]: {exc}", highlight=False)
        return 1
    except WorkerError as exc:
        print_error(exc)
        return 1
    finally:
        # A second Ctrl-C (or a SIGTERM) must not cut the cleanup short: it takes seconds at most.
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            stack.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _ports(args: argparse.Namespace) -> Ports:
    """The ports given, else the defaults; with --demo, which needs no fixed address, any free ones."""
    defaults = Ports()
    chosen: dict[str, int] = {}
    for item in fields(Ports):
        given = getattr(args, f"{item.name}_port")
        chosen[item.name] = given if given is not None else 0 if args.demo else getattr(defaults, item.name)
    return Ports(**chosen)


def _demo(info: StackInfo, check: Callable[[], None] | None = None) -> int:
    """The README's first command: one model-free workflow with an input image, inbox to outbox."""
    try:
        workflow, image = _demo_file(DEMO_WORKFLOW), _demo_file(DEMO_IMAGE)
        doc = build_request(workflow, {DEMO_IMAGE: image.read_bytes()})
        destination = Destination(
            info.storage_client(), info.inbox_bucket, "demo/", info.outbox_bucket, info.outbox_prefix
        )
        submitted = send(destination, doc, workflow)
    except StackError as exc:
        console.print(f"[red]error[/red]: {exc}", highlight=False)
        return 1
    except WorkerError as exc:
        print_error(exc)
        return 1
    return follow(destination.client, submitted, out_dir=DEMO_OUT, timeout_s=DEMO_TIMEOUT_S, check=check)


def _demo_file(name: str) -> Path:
    """workflows/NAME in this folder, else in the checkout this package was installed from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = root / "workflows" / name
        if path.is_file():
            return path
    raise StackError(f"workflows/{name} is missing: run the demo from the repository's checkout")


def _print_components(stack: DevStack) -> None:
    rows = stack.components()
    width = max(len(part) for part, _, _ in rows)
    address_width = max(len(address) for _, address, _ in rows)
    for part, address, note in rows:
        print(f"  {part.ljust(width)}  {address.ljust(address_width)}  {note}")


def _route_logs(log_dir: Path, *, verbose: bool) -> None:
    """ComfyUI's and the jobs' lines go to files under DATA/logs; the console keeps the stack's own."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for name, filename in _QUIET_LOGGERS.items():
        handler = logging.FileHandler(log_dir / filename)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = verbose
