"""`worker-comfyui serve`: ComfyUI as a child (or attached) and the /predict service on $PORT.

uvicorn owns SIGTERM while it serves: it stops accepting, lets in-flight requests finish (a few
seconds at most, inside Cloud Run's 10 s), then re-raises the signal, which `exit_on_sigterm`
turns into SystemExit, so leaving `comfyui_runner` stops ComfyUI and no child outlives us.
"""

from __future__ import annotations

import argparse
from typing import Any

from job.boot import comfyui_runner
from job.settings import Settings
from job.subprocesses import exit_on_sigterm

GRACEFUL_SHUTDOWN_S = 5


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="serve POST /predict (and friends) over HTTP")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 8080)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")  # noqa: S104
    parser.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from job.service.app import create_app

    exit_on_sigterm()
    with comfyui_runner(settings) as runner:
        config = uvicorn.Config(
            create_app(settings, runner),
            host=args.host,
            port=args.port or settings.port,
            log_config=None,  # our JSON (or rich) handler on the root logger formats uvicorn's lines too
            access_log=False,  # Cloud Run logs every request itself; /predict logs its own line with timings
            proxy_headers=True,
            forwarded_allow_ips="*",  # Cloud Run's front end sets X-Forwarded-Proto: status URLs say https
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else 1
