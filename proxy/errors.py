"""The typed error hierarchy every layer raises, and the one place it becomes HTTP.

Adapters, the router and extensions raise these; ``error_response`` renders any of
them as an OpenAI error object. Nothing matches on message text: the class carries
the status, the OpenAI ``type`` and ``code``, and whether the router may retry.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import msgspec

#: How much of a client's value an error message repeats (see ``shown``).
ECHO_LIMIT = 200
#: The longest message an error body carries, whatever was put into it.
MESSAGE_LIMIT = 2000


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """``value`` as an error message may repeat it: at most ``limit`` characters.

    A longer value keeps its start, then an ellipsis and its original length, so a
    5 MB collection name comes back as about 200 characters, not as 5 MB.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


_QUOTED = re.compile(rf"'[^']{{{ECHO_LIMIT},}}'|`[^`]{{{ECHO_LIMIT},}}`")


def shown_quoted(text: str) -> str:
    """``text`` (a library's message) with every long quoted value in it shortened.

    msgspec's validation errors quote the offending value or key
    (``Invalid enum value '...'``, ``unknown field `...```); the rest of the message
    (what was expected, the path) stays whole.
    """
    if len(text) <= ECHO_LIMIT:
        return text
    return _QUOTED.sub(lambda m: m[0][0] + shown(m[0][1:-1]) + m[0][-1], text)


class ErrorBody(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


class SwitchyardError(Exception):
    """Base class: an error with an HTTP status and an OpenAI error shape."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None
    #: The router may try another deployment when this happens before any byte was sent.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
        error_type: str | None = None,
    ) -> None:
        message = shown(message, MESSAGE_LIMIT)
        super().__init__(message)
        self.http_status = status or type(self).status
        self.error_type = error_type or type(self).type
        self.message = message
        self.param = param
        self.instance_code = code
        self.headers = headers or {}

    @property
    def error_code(self) -> str | None:
        return self.instance_code or self.code

    def body(self) -> ErrorEnvelope:
        return ErrorEnvelope(
            ErrorBody(
                message=self.message, type=self.error_type, param=self.param, code=self.error_code
            )
        )


class InvalidRequest(SwitchyardError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class UnsupportedCapability(InvalidRequest):
    code = "unsupported_capability"


class AuthenticationFailed(SwitchyardError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(SwitchyardError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(SwitchyardError):
    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(SwitchyardError):
    """The request clashes with what exists: a taken name, a change to a revoked key."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(SwitchyardError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(SwitchyardError):
    """Too many requests: a full local queue, or an upstream 429 after every retry."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s
        if retry_after_s is not None:
            self.headers.setdefault("Retry-After", str(max(1, round(retry_after_s))))


class RateLimitExceeded(RateLimited):
    """A key's or team's RPM, TPM or parallel limit refused the request (never retried:
    another deployment would not change the caller's own limit). ``kind`` says which
    limit (``rpm``, ``tpm``, ``parallel``): the ``kind`` label of the rejections metric."""

    code = "rate_limit_exceeded"
    retryable = False

    def __init__(self, message: str, *, kind: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.kind = kind


class BudgetExceeded(SwitchyardError):
    """A key's or team's spend for the current period reached its ``max_budget_usd``."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"
    retryable = False
    kind = "budget"
    """The ``kind`` label of the rejections metric."""

    def __init__(self, message: str, *, retry_after_s: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s
        self.headers.setdefault("Retry-After", str(max(1, math.ceil(retry_after_s))))
        # The OpenAI SDKs retry a 429 unless told not to; a retry cannot succeed before
        # the period ends (often hours away).
        self.headers.setdefault("x-should-retry", "false")


class UpstreamError(SwitchyardError):
    """The upstream failed (5xx or a broken response); surfaced as 502."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamRejected(SwitchyardError):
    """The upstream answered 4xx: its status and message reach the client unchanged."""

    retryable = False

    def __init__(
        self, status: int, message: str, *, type: str | None, param: str | None, code: str | None
    ) -> None:
        super().__init__(
            message,
            param=param,
            code=code,
            status=status,
            error_type=type or "invalid_request_error",
        )


class ClientDisconnected(SwitchyardError):
    """The client went away before the answer was ready (logged as nginx's 499)."""

    status = 499
    type = "client_closed_request"
    code = "client_disconnected"


class StreamAborted(Exception):
    """Raised inside a streamed body to cut it: the response ends without its final chunk.

    Once the status line is out, a failure can no longer become an error status; a body
    with no in-band error format (audio bytes) can only be left incomplete, so the
    client sees a broken transfer instead of a clean, truncated end. The request
    middleware records ``failure`` and lets the server close the connection.
    """

    def __init__(self, failure: SwitchyardError) -> None:
        super().__init__(failure.message)
        self.failure = failure


class ServiceUnavailable(SwitchyardError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class StateUnavailable(ServiceUnavailable):
    """The state database or Redis could not be reached (``proxy.tenancy.outage``)."""

    code = "state_unavailable"


class MediaUnavailable(ServiceUnavailable):
    """The media backend (an S3-compatible object store) could not be reached or refused."""

    code = "media_unavailable"


class ServerShuttingDown(ServiceUnavailable):
    """The server was stopping and the drain time ran out before this request ended."""

    code = "server_shutting_down"


class ServerOverloaded(ServiceUnavailable):
    """More connections or requests than ``server.limit_concurrency`` allows."""

    code = "server_overloaded"


class RequestTimeout(SwitchyardError):
    """The request head or body did not arrive within ``server.request_read_timeout_s``."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


_encode = msgspec.json.Encoder().encode


def encode_error(exc: SwitchyardError) -> bytes:
    return _encode(exc.body())


def sse_error_frame(exc: SwitchyardError) -> bytes:
    """The frame that ends a stream which failed after its first byte."""
    return b"data: " + encode_error(exc) + b"\n\n"
