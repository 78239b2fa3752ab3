"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: thin handlers.

Decode, translate (``request``), serve through the gateway (``proxy.dialects.bridge``),
translate back (``response``). A model whose every deployment speaks Messages itself
(``native: [messages]``) gets the client's body passed through instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import msgspec
from litestar import Request, Response, post

from adapters.base import Adapter, Capability, RawJSON
from extensions.activation import read_activation
from proxy.app_state import AppState
from proxy.context import request_info
from proxy.dialects import bridge
from proxy.dialects.anthropic.errors import error_body
from proxy.dialects.anthropic.request import chat_body, count_body
from proxy.dialects.anthropic.response import message_events, message_of, native_events
from proxy.dialects.anthropic.wire import (
    CountTokensRequest,
    MessagesRequest,
    TokenCount,
    decode,
    encode,
)
from proxy.disconnect import stopped_on_disconnect
from proxy.errors import InvalidRequest
from proxy.responses import BytesResponse
from proxy.schemas.base import UNSET, Envelope, NativeRequest, convert_request, decode_request
from proxy.schemas.tokenize import TokenizeRequest

DIALECT = "messages"
SHUTDOWN_FRAME = (
    b"event: error\ndata: "
    + error_body(
        "overloaded_error", "The server is shutting down; the stream was ended before it finished."
    )
    + b"\n\n"
)
"""The event that ends a stream still running when the server shuts down."""

TOKEN_COUNT_HEADER = "x-switchyard-token-count"
"""``exact`` (the model's tokenizer over its rendered chat prompt) or ``estimate``."""

_decode_count = msgspec.json.Decoder(dict[str, Any]).decode


def _stream(events: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> Response[Any]:
    return bridge.event_stream(events, headers or {}, shutdown_frame=SHUTDOWN_FRAME)


def _native_stream(events: AsyncIterator[bytes]) -> Response[Any]:
    return _stream(native_events(events))


@post(
    "/v1/messages",
    summary="Create a message (Anthropic Messages API)",
    status_code=200,
    opt={"request_body": MessagesRequest},
    tags=["Anthropic"],
)
async def create_message(request: Request[Any, Any, Any]) -> Response[Any]:
    raw = await request.body()
    probe = decode_request(raw, NativeRequest)
    if bridge.is_native(request, probe.model, DIALECT, probe.body):
        return await bridge.passthrough(
            request, DIALECT, raw, route=DIALECT, stream_response=_native_stream
        )
    envelope = decode(raw, MessagesRequest)
    params = envelope.params
    stop = list(params.stop_sequences) if params.stop_sequences is not UNSET else []
    result = await bridge.run_chat(request, chat_body(params, envelope.body), route=DIALECT)
    if isinstance(result, bridge.ChatChunks):
        return _stream(message_events(result.chunks, params.model, stop), result.headers)
    message = message_of(result.completion, params.model, stop)
    return BytesResponse(encode(message), headers=result.headers)


def _base_model(model: str) -> str:
    """The model without extension suffixes (``smol+pirate`` -> ``smol``): extensions do
    not apply to counting."""
    try:
        return read_activation(model, {}, {})[0]
    except InvalidRequest:  # not extension suffixes: routing reports an unknown model
        return model


def estimate_tokens(body: dict[str, Any]) -> int:
    """About four characters a token over the chat messages and tools as JSON (the rule
    the gateway's own TPM estimate uses)."""
    text = encode(body["messages"]) + encode(body.get("tools") or [])
    return len(text) // 4 + 1


@post(
    "/v1/messages/count_tokens",
    summary="Count the tokens of a Messages request",
    status_code=200,
    opt={"request_body": CountTokensRequest},
    tags=["Anthropic"],
)
async def count_tokens(request: Request[Any, Any, Any]) -> Response[Any]:
    state: AppState = request.app.state.switchyard
    gateway = state.gateway
    raw = await request.body()
    probe = decode_request(raw, NativeRequest)
    if bridge.is_native(request, probe.model, DIALECT, probe.body):
        return await _native_count(request, probe)
    envelope = decode(raw, CountTokensRequest)
    model = _base_model(envelope.params.model)
    body = {**count_body(envelope.params), "model": model}
    info = request_info(request.scope)
    info.route = "messages_count_tokens"
    deployments = gateway.router.deployments_of(model)
    await gateway.tenancy.admit(info, model, body=body)
    info.model = model
    if not any(Capability.TOKENIZE in d.adapter.capabilities for d in deployments):
        count = TokenCount(input_tokens=estimate_tokens(body))
        return BytesResponse(encode(count), headers={TOKEN_COUNT_HEADER: "estimate"})
    tokenize = convert_request(body, TokenizeRequest)
    stats = info.stats

    def invoke(adapter: Adapter) -> Awaitable[Any]:
        return stopped_on_disconnect(
            adapter, request.receive, adapter.count_tokens(tokenize, stats)
        )

    counted = await gateway.router.call(model, Capability.TOKENIZE, invoke, stats)
    number = _count_of(counted)
    return BytesResponse(
        encode(TokenCount(input_tokens=number)), headers={TOKEN_COUNT_HEADER: "exact"}
    )


async def _native_count(
    request: Request[Any, Any, Any], envelope: Envelope[NativeRequest]
) -> Response[Any]:
    """A native Messages model's count: the client's body to the upstream's own
    ``count_tokens``, through the same admission and router as the translated count."""
    gateway = request.app.state.switchyard.gateway
    info = request_info(request.scope)
    info.route = "messages_count_tokens"
    model = envelope.model
    await gateway.tenancy.admit(info, model, body=envelope.body)
    info.model = model
    stats = info.stats

    def invoke(adapter: Adapter) -> Awaitable[RawJSON]:
        return stopped_on_disconnect(
            adapter, request.receive, adapter.native_count_tokens(DIALECT, envelope, stats)
        )

    counted = await gateway.router.call(model, Capability.TOKENIZE, invoke, stats)
    return BytesResponse(counted.content, headers={TOKEN_COUNT_HEADER: "exact"})


def _count_of(counted: Any) -> int:
    """``count`` of a ``TokenCountResponse`` or of an upstream's raw JSON answer."""
    content = getattr(counted, "content", None)
    if isinstance(content, bytes):
        return int(_decode_count(content)["count"])
    return int(counted.count)


ROUTES = [create_message, count_tokens]
