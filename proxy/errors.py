"""The typed error hierarchy every layer raises, and the one place it becomes HTTP.

Adapters, the router and extensions raise these; ``error_response`` renders any of
them as an OpenAI error object. Nothing matches on message text: the class carries
the status, the OpenAI ``type`` and ``code``, and whether the router may retry.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


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


class ServiceUnavailable(SwitchyardError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


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
