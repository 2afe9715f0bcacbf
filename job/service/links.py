"""The service's own URLs in its answers (an async request's `status_url` and `Location`).

Never from the `Host` header: any caller sets that, and a link built from it sends the next reader
(a client, a log, a webhook receiver) wherever the caller chose. In order:

    PUBLIC_URL set                 -> PUBLIC_URL + /status/<id>
    TRUST_PROXY_HEADERS, and the   -> <X-Forwarded-Proto or https>://<X-Forwarded-Host>/status/<id>
    proxy sent X-Forwarded-Host       (the last entry: the one our proxy added)
    otherwise                      -> /status/<id>, relative to wherever the caller reached us
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers

_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$")


class Links:
    """Builds the service's absolute (or relative) URLs from the settings, never from `Host`."""

    def __init__(self, public_url: str | None, *, trust_proxy_headers: bool) -> None:
        self.public_url = public_url.rstrip("/") if public_url else None
        self.trust_proxy_headers = trust_proxy_headers

    def base(self, headers: Headers) -> str:
        """`scheme://host[/prefix]` to put before a path, or "" for a relative URL."""
        if self.public_url:
            return self.public_url
        if self.trust_proxy_headers:
            host = _last(headers.get("x-forwarded-host"))
            proto = _last(headers.get("x-forwarded-proto")) or "https"
            if host and _HOST.match(host) and proto in ("http", "https"):
                return f"{proto}://{host}"
        return ""

    def status_url(self, headers: Headers, request_id: str) -> str:
        return f"{self.base(headers)}/status/{request_id}"


def _last(value: str | None) -> str:
    """The last entry of a comma-separated forwarding header: what the nearest proxy set."""
    return (value or "").rsplit(",", 1)[-1].strip()
