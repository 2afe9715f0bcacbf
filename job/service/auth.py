"""The optional bearer token (API_TOKEN). Without one, access is Cloud Run IAM's business.

With a token, every route but /healthz needs it: the API routes through a FastAPI dependency (so
the OpenAPI schema shows the scheme and /docs offers "Authorize"), and the OpenAPI document and its
pages through `DocsGuard`, unless PUBLIC_DOCS opens those. A browser cannot put a header on the
page it loads, nor does Swagger UI send one when it fetches /openapi.json, so the docs also take
the token as the cookie `api_token` (set once in the browser: docs/api.md section 5.6). The cookie
is accepted there only: the API never takes it, so no other site can make a browser call it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Collection

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from job.errors import Unauthorized
from job.service.handlers import error_response, log_error

COOKIE = "api_token"
_bearer = HTTPBearer(auto_error=False, description="The service's API_TOKEN, when one is set.")


def _matches(given: str, expected: bytes) -> bool:
    # Compared in constant time, and always compared, so timing says nothing about the token.
    return hmac.compare_digest(given.encode(), expected)


def _refusal(docs: bool = False) -> Unauthorized:
    where = " (or, for the docs in a browser, the cookie `api_token`)" if docs else ""
    return Unauthorized(f"a valid `Authorization: Bearer <API_TOKEN>` header is required{where}")


def bearer_guard(token: str) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that lets a request through only with `Authorization: Bearer <token>`."""
    expected = token.encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:  # noqa: B008
        if not _matches(credentials.credentials if credentials is not None else "", expected):
            raise _refusal()

    return check


class DocsGuard:
    """ASGI middleware: `paths` (the OpenAPI document and its pages) need the token, by header or cookie."""

    def __init__(self, app: ASGIApp, token: str, paths: Collection[str]) -> None:
        self.app = app
        self.expected = token.encode()
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths and not self._allowed(HTTPConnection(scope)):
            refused = _refusal(docs=True)
            log_error(None, refused)
            await error_response(refused)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, connection: HTTPConnection) -> bool:
        scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
        header = credentials.strip() if scheme.lower() == "bearer" else ""
        by_header = _matches(header, self.expected)
        by_cookie = _matches(connection.cookies.get(COOKIE, ""), self.expected)
        return by_header or by_cookie
