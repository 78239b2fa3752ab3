"""Anthropic's failures as the gateway's typed errors.

Anthropic answers an error as ``{"type": "error", "error": {"type", "message"}}`` with
an HTTP status, or, once a stream has begun, as an ``error`` event carrying the same
object (an ``overloaded_error`` is the usual one). Both become the same typed errors:

- 429 ``rate_limit_error``: ``RateLimited`` with the upstream's ``retry-after``, so the
  router cools the deployment down for exactly that long (binding);
- 529 ``overloaded_error``: a retryable ``UpstreamError`` answered as 503 (the router
  tries another deployment first; an OpenAI client sees a 503 it may retry);
- other 5xx (``api_error``, ``timeout_error``): a retryable 502 ``UpstreamError``;
- other 4xx: ``UpstreamRejected`` with Anthropic's status and error type, never retried.
  A 401 or 403 is passed on like the ``openai`` adapter passes one on, but its message
  says that the *deployment's* Anthropic key was refused, not the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from adapters.anthropic.wire import ErrorObject, decode_error
from adapters.openai.upstream import retry_after_seconds
from proxy.errors import RateLimited, SwitchyardError, UpstreamError, UpstreamRejected

#: The HTTP status each error ``type`` comes with (Anthropic's errors page); used for
#: an ``error`` event in a stream, which has no status of its own.
STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

OVERLOADED_STATUS = 529


def typed_error(
    status: int, etype: str | None, message: str, headers: Mapping[str, str] | None = None
) -> SwitchyardError:
    """The typed error for an Anthropic failure of ``status`` and error ``etype``."""
    if status == 429:
        return RateLimited(
            f"Upstream rate limit: {message}",
            retry_after_s=retry_after_seconds(headers or {}),
        )
    if status == OVERLOADED_STATUS:
        return UpstreamError(
            f"The Anthropic upstream is overloaded: {message}",
            status=503,
            code="upstream_overloaded",
        )
    if status >= 500:
        return UpstreamError(f"Upstream error {status}: {message}")
    if status in (401, 403):
        message = f"The Anthropic upstream refused this deployment's API key: {message}"
    return UpstreamRejected(status, message, type=etype, param=None, code=None)


def error_from_response(status: int, content: bytes, headers: Mapping[str, str]) -> SwitchyardError:
    """Turn a non-2xx answer of the Messages API into the matching typed error."""
    message = content.decode("utf-8", "replace").strip()[:2000] or f"HTTP {status}"
    etype = None
    try:
        parsed = decode_error(content)
    except (msgspec.MsgspecError, RecursionError):
        parsed = None
    if parsed is not None and parsed.error is not None:
        etype = parsed.error.type
        message = parsed.error.message or message
    return typed_error(status, etype, message, headers)


def error_from_event(error: ErrorObject | None) -> SwitchyardError:
    """An ``error`` event in a stream (its status is the one its type comes with)."""
    if error is None:
        return UpstreamError("The Anthropic upstream sent an error event without an error.")
    status = STATUS_OF_TYPE.get(error.type, 500)
    return typed_error(status, error.type, error.message or error.type)
