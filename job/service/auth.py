"""The optional bearer token (API_TOKEN). Without one, access is Cloud Run IAM's business."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from job.errors import Unauthorized

_bearer = HTTPBearer(auto_error=False, description="The service's API_TOKEN, when one is set.")


def bearer_guard(token: str) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that lets a request through only with `Authorization: Bearer <token>`."""
    expected = token.encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:  # noqa: B008
        given = credentials.credentials.encode() if credentials is not None else b""
        # Compared in constant time, and always compared, so timing says nothing about the token.
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("a valid `Authorization: Bearer <API_TOKEN>` header is required")

    return check
