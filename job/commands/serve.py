"""`worker-comfyui serve`: ComfyUI as a child (or attached) and the /predict service on $PORT.

SIGTERM (Cloud Run's stop, about 10 s before its SIGKILL) drains first (job/service/shutdown.py):
queued and new requests get a JSON 503 `shutting_down` at once, the running one has SHUTDOWN_GRACE_S
to finish before it is stopped and answered the same way; only then does uvicorn stop, and leaving
`comfyui_runner` stops ComfyUI, so no child outlives us. A second SIGTERM, or Ctrl-C, stops at once
(uvicorn's own handling, which `exit_on_sigterm` then turns into SystemExit).
"""

from __future__ import annotations

import argparse
from typing import Any

from job.engine.boot import comfyui_runner
from job.settings import Settings
from job.subprocesses import exit_on_sigterm

GRACEFUL_SHUTDOWN_S = 2  # uvicorn's own wait for connections, after the drain has answered every request


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="serve POST /predict (and friends) over HTTP")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 8080)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")  # noqa: S104
    parser.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from job.service.app import create_app
    from job.service.shutdown import DrainingServer, Shutdown

    exit_on_sigterm()
    with comfyui_runner(settings) as runner:
        shutdown = Shutdown(settings.shutdown_grace_s)
        config = uvicorn.Config(
            create_app(settings, runner, shutdown=shutdown),
            host=args.host,
            port=args.port or settings.port,
            log_config=None,  # our JSON (or rich) handler on the root logger formats uvicorn's lines too
            access_log=False,  # Cloud Run logs every request itself; /predict logs its own line with timings
            # X-Forwarded-For/Proto only from a proxy we are told to trust (Cloud Run's front end):
            # from anyone else they would forge the client's address in our logs.
            proxy_headers=settings.trust_proxy_headers,
            forwarded_allow_ips="*" if settings.trust_proxy_headers else None,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        server = DrainingServer(config, shutdown)
        server.run()
        return 0 if server.started else 1
