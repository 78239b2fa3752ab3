"""Switchyard's errors in Anthropic's shape: by class, then by status, headers kept."""

from __future__ import annotations

import json

import pytest

from proxy.dialects.anthropic import MessagesDialect
from proxy.dialects.anthropic.errors import stream_error
from proxy.dialects.bridge import StreamFailed
from proxy.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    ContextLengthExceeded,
    ErrorBody,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimitExceeded,
    ServerOverloaded,
    SwitchyardError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (AuthenticationFailed("who"), 401, "authentication_error"),
        (PermissionDenied("no"), 403, "permission_error"),
        (ModelNotFound("none"), 404, "not_found_error"),
        (PayloadTooLarge("big"), 413, "request_too_large"),
        (RateLimitExceeded("slow", kind="rpm"), 429, "rate_limit_error"),
        (BudgetExceeded("spent", retry_after_s=60), 429, "rate_limit_error"),
        (ServerOverloaded("busy"), 529, "overloaded_error"),
        (UpstreamTimeout("late"), 504, "timeout_error"),
        (UpstreamError("broke"), 500, "api_error"),
        (SwitchyardError("oops"), 500, "api_error"),
        (InvalidRequest("Method Not Allowed", status=405), 405, "invalid_request_error"),
        (UpstreamRejected(403, "nope", type=None, param=None, code=None), 403, "permission_error"),
        (
            UpstreamRejected(422, "odd", type=None, param=None, code=None),
            422,
            "invalid_request_error",
        ),
    ],
)
def test_errors_get_anthropics_status_and_type(
    error: SwitchyardError, status: int, kind: str
) -> None:
    got_status, body, _ = MessagesDialect.render_error(error)
    assert got_status == status
    assert json.loads(body) == {"type": "error", "error": {"type": kind, "message": error.message}}


def test_a_prompt_too_long_says_so_as_anthropic_does() -> None:
    status, body, _ = MessagesDialect.render_error(ContextLengthExceeded("N > M", param="messages"))
    assert (status, json.loads(body)["error"]) == (
        400,
        {"type": "invalid_request_error", "message": "prompt is too long: N > M"},
    )
    _, body, _ = MessagesDialect.render_error(
        ContextLengthExceeded("N + K > M", param="max_tokens")
    )
    assert json.loads(body)["error"]["message"] == (
        "input length and `max_tokens` exceed context limit: N + K > M"
    )


def test_retry_after_is_kept() -> None:
    _, _, headers = MessagesDialect.render_error(
        RateLimitExceeded("slow", kind="rpm", retry_after_s=3)
    )
    assert headers["Retry-After"] == "3"


def test_a_failure_in_the_gateways_stream_keeps_its_kind() -> None:
    failure = StreamFailed(ErrorBody(message="late", type="timeout_error", code="upstream_timeout"))
    assert (stream_error(failure).error.type, stream_error(failure).error.message) == (
        "timeout_error",
        "late",
    )
    assert stream_error(UpstreamError("x")).error.type == "api_error"
