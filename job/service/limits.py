"""The body size limit (MAX_BODY_BYTES): checked on Content-Length first, then while streaming.

A plain ASGI middleware, so the limit holds before any framework code buffers the body, and a
client that lies about (or omits) Content-Length is cut off at the limit just the same.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from job.errors import PayloadTooLarge


class BodyLimit:
    """413 for any request whose body is, or grows, larger than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than {self.max_bytes} bytes (MAX_BODY_BYTES); "
            "pass large inputs by reference in `inputs` (gs:// or https://) instead of inline base64"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, self.too_large())
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large()
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except PayloadTooLarge as exc:
            if started:
                raise
            await _send_error(send, exc)


async def _send_error(send: Send, error: PayloadTooLarge) -> None:
    body = json.dumps(error.to_body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(request: Request) -> bytes:
    """The whole request body; BodyLimit (around the app) cuts it off at MAX_BODY_BYTES."""
    chunks = [chunk async for chunk in request.stream()]
    return b"".join(chunks)
