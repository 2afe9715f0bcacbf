"""What can go wrong in the trigger, and the one place Google's exceptions become ours.

    TriggerError                  base
    ├── TransientError            raise it: the function answers 5xx and Eventarc redelivers
    │   └── ClaimBusy             another delivery holds a live claim on the same object generation
    ├── PermanentError            acknowledge it: retrying cannot help; the message says what to fix
    └── ConfigurationError        an environment variable is wrong (names the variable)

The trigger is deployed on its own (the Cloud Function's source is this folder only), so it
cannot import `job.errors`; this small tree is its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud.storage.exceptions import DataCorruption


class TriggerError(Exception):
    """Base of every error the trigger reports."""


class TransientError(TriggerError):
    """A failure that a later delivery of the same event may not meet (5xx, 429, timeouts)."""


class ClaimBusy(TransientError):
    """Another delivery claimed this object generation and has not finished starting the job."""


class PermanentError(TriggerError):
    """A failure that every redelivery would meet again; the message says what to fix."""


class ConfigurationError(TriggerError):
    """An environment variable is missing or malformed; the message names it."""


# Status classes that a later attempt may not meet: server errors, throttling, timeouts, conflicts.
_TRANSIENT: tuple[type[BaseException], ...] = (
    gexc.ServerError,  # 500, 502, 503, 504, UNKNOWN, DEADLINE_EXCEEDED
    gexc.TooManyRequests,  # 429, RESOURCE_EXHAUSTED
    gexc.Conflict,  # 409, ABORTED
    gexc.Cancelled,
    gexc.RetryError,  # a Retry gave up on transient errors
    requests.RequestException,  # REST transport: connection refused, reset, read timeout
    auth_exc.TransportError,  # the token endpoint did not answer
    auth_exc.RefreshError,  # the metadata server hiccuped while refreshing a token
    ConnectionError,
    TimeoutError,
    DataCorruption,  # a download whose checksum did not match (a read racing a rewrite): read again
)


@contextmanager
def translate_google_errors(action: str, fixes: Mapping[type[BaseException], str]) -> Iterator[None]:
    """Turn google-api-core, google-auth and requests exceptions raised inside into ours.

    `action` says what was being done ("start job projects/p/locations/r/jobs/j"); `fixes` maps
    the exception classes that are the caller's to fix (NotFound, PermissionDenied, ...) to the
    advice the log should carry. Anything transient becomes TransientError; any other client
    error becomes PermanentError; exceptions foreign to Google's libraries pass through.
    """
    try:
        yield
    except TriggerError:
        raise
    except _TRANSIENT as exc:
        raise TransientError(f"{action}: {_describe(exc)} (transient; Eventarc will redeliver)") from exc
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as exc:
        fix = next((text for cls, text in fixes.items() if isinstance(exc, cls)), None)
        advice = f"; fix: {fix}" if fix else ""
        raise PermanentError(f"{action}: {_describe(exc)}{advice}") from exc


def _describe(exc: BaseException) -> str:
    """A one-line description: the class, the status code when known, and the message."""
    message = getattr(exc, "message", None) or str(exc) or repr(exc)
    code = getattr(exc, "code", None)
    prefix = f"{type(exc).__name__} ({code})" if isinstance(code, int) else type(exc).__name__
    return f"{prefix}: {message}"
