"""Switchyard's typed errors in Anthropic's shape and with Anthropic's status codes.

``{"type": "error", "error": {"type": ..., "message": ...}}``. The type and status come
from the error's class (the first row of ``_BY_CLASS`` it is an instance of), else from
its HTTP status (``_BY_STATUS``), never from its message; headers (``Retry-After``,
``x-should-retry``) are kept. Anthropic's SDK picks its exception class by status
(400 ``BadRequestError``, 401 ``AuthenticationError``, 404 ``NotFoundError``, 413
``ContentTooLargeError``, 429 ``RateLimitError``, 529 ``OverloadedError``, other 5xx
``InternalServerError``).
"""

from __future__ import annotations

from proxy.dialects.anthropic.wire import ErrorEvent, ErrorObject, encode
from proxy.dialects.bridge import StreamFailed
from proxy.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    SwitchyardError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)

#: (class, status or None to keep the error's own, Anthropic type), most specific first.
_BY_CLASS: tuple[tuple[type[SwitchyardError], int | None, str], ...] = (
    (AuthenticationFailed, 401, "authentication_error"),
    (PermissionDenied, 403, "permission_error"),
    (NotFound, 404, "not_found_error"),
    (PayloadTooLarge, 413, "request_too_large"),
    (RateLimited, 429, "rate_limit_error"),
    (BudgetExceeded, 429, "rate_limit_error"),
    (UpstreamTimeout, 504, "timeout_error"),
    (ServiceUnavailable, 529, "overloaded_error"),
    (UpstreamError, 500, "api_error"),
    # A 4xx the upstream answered, or one of the app's own (405, 408, ...): its status.
    (InvalidRequest, None, "invalid_request_error"),
)

_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}

#: The OpenAI ``type`` of an error event in the gateway's stream -> Anthropic's type.
_STREAM_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "insufficient_quota": "rate_limit_error",
    "timeout_error": "timeout_error",
}


def anthropic_status(error: SwitchyardError) -> tuple[int, str]:
    """The status and Anthropic error type of ``error``."""
    if not isinstance(error, UpstreamRejected):
        for cls, status, kind in _BY_CLASS:
            if isinstance(error, cls):
                return (error.http_status if status is None else status), kind
    status = error.http_status
    if status in _BY_STATUS:
        return status, _BY_STATUS[status]
    if 400 <= status < 500:
        return status, "invalid_request_error"
    return 500, "api_error"


def error_body(kind: str, message: str) -> bytes:
    return encode(ErrorEvent(ErrorObject(type=kind, message=message)))


#: The codes of a prompt that does not fit the model's context (the local adapter's, and
#: an OpenAI-compatible upstream's 400).
_TOO_LONG_CODES = frozenset({"context_length_exceeded"})


def message_of(error: SwitchyardError) -> str:
    """The error's message; a prompt that does not fit the context starts as Anthropic's
    does (``prompt is too long``: what Claude Code looks for to compact its context)."""
    if error.error_code in _TOO_LONG_CODES:
        if error.param in ("max_tokens", "max_completion_tokens"):
            return f"input length and `max_tokens` exceed context limit: {error.message}"
        return f"prompt is too long: {error.message}"
    return error.message


def render_error(error: SwitchyardError) -> tuple[int, bytes, dict[str, str]]:
    status, kind = anthropic_status(error)
    return status, error_body(kind, message_of(error)), error.headers


def stream_error(error: SwitchyardError) -> ErrorEvent:
    """The ``error`` event that ends a stream which failed after it began. A failure the
    gateway reported in its own stream (``bridge.StreamFailed``) keeps its kind."""
    if isinstance(error, StreamFailed):
        kind = _STREAM_TYPES.get(error.error_type, "api_error")
    else:
        kind = anthropic_status(error)[1]
    return ErrorEvent(ErrorObject(type=kind, message=message_of(error)))
