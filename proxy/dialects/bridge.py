"""How a dialect runs its translated request through the gateway, and reads the result.

A dialect's route builds an internal chat request (a Chat Completions body) and calls
``run_chat``: the gateway serves it exactly as it serves ``/v1/chat/completions``
(identity, limits, extensions, cache, routing, usage), and the result comes back as
what the OpenAI route would have sent, parsed into typed Structs:

- ``ChatReply``: the ``ChatCompletion`` of a non-streaming request;
- ``ChatChunks``: the ``ChatCompletionChunk`` stream of a streaming one. A failure
  after the stream began (an error event in the OpenAI stream) is raised from the
  iterator as ``StreamFailed``, so the dialect writes its own error event.

``run_completions`` and ``run_embeddings`` do the same for ``/v1/completions`` (the
``Completion`` objects or their stream, in the same two shapes) and ``/v1/embeddings``.

Both carry the response headers the gateway set (``x-switchyard-cache``, extension
headers), which the dialect's response keeps.

``passthrough`` is the other way: a deployment whose upstream speaks the dialect itself
(``native: [responses]``) receives the client's body unchanged, through the same
admission and router.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response

from adapters.base import Adapter, Capability, RawJSON
from extensions.activation import read_activation
from proxy.app_state import AppState
from proxy.context import request_info
from proxy.disconnect import stopped_on_disconnect
from proxy.errors import ErrorBody, SwitchyardError, UpstreamError
from proxy.gateway import CHAT, COMPLETIONS, EMBEDDINGS, json_response
from proxy.responses import BytesResponse, EventStreamResponse
from proxy.schemas.base import NativeRequest, decode_request
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk
from proxy.schemas.completions import Completion
from proxy.schemas.embeddings import EmbeddingResponse
from proxy.streaming import SSE_HEADERS

_encode = msgspec.json.Encoder().encode
_decode_completion = msgspec.json.Decoder(ChatCompletion).decode
_decode_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode
_decode_text_completion = msgspec.json.Decoder(Completion).decode
_decode_embeddings = msgspec.json.Decoder(EmbeddingResponse).decode


class _ErrorFrame(msgspec.Struct):
    error: ErrorBody | None = None


_decode_error_frame = msgspec.json.Decoder(_ErrorFrame).decode
_DONE = b"[DONE]"


class StreamFailed(SwitchyardError):
    """An error event in the gateway's stream, after it began: the original error's
    type, code and message, for the dialect to render as its own error event."""

    def __init__(self, body: ErrorBody) -> None:
        super().__init__(
            body.message, param=body.param, code=body.code, error_type=body.type, status=500
        )


@dataclass(slots=True)
class ChatReply:
    completion: ChatCompletion
    headers: dict[str, str]


@dataclass(slots=True)
class ChatChunks:
    chunks: AsyncIterator[ChatCompletionChunk]
    headers: dict[str, str]


@dataclass(slots=True)
class CompletionReply:
    completion: Completion
    headers: dict[str, str]


@dataclass(slots=True)
class CompletionChunks:
    chunks: AsyncIterator[Completion]
    headers: dict[str, str]


def _headers(response: Response[Any]) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() != "content-type"}


async def run_chat(
    request: Request[Any, Any, Any], body: dict[str, Any], *, route: str
) -> ChatReply | ChatChunks:
    """Serve the chat request ``body`` as ``/v1/chat/completions`` would (``route`` names
    it in metrics and logs); raises ``SwitchyardError`` where that route answers an error."""
    state: AppState = request.app.state.switchyard
    response = await state.gateway.serve(CHAT, request, _encode(body), route=route)
    if isinstance(response, EventStreamResponse):
        return ChatChunks(_chunks(response.body_iterator), _headers(response))
    assert isinstance(response, BytesResponse), type(response)
    return ChatReply(_decode_completion(response.content), _headers(response))


async def run_completions(
    request: Request[Any, Any, Any], body: dict[str, Any], *, route: str
) -> CompletionReply | CompletionChunks:
    """``run_chat`` for a legacy completions body (``/v1/completions``)."""
    state: AppState = request.app.state.switchyard
    response = await state.gateway.serve(COMPLETIONS, request, _encode(body), route=route)
    if isinstance(response, EventStreamResponse):
        chunks = _chunks(response.body_iterator, _decode_text_completion)
        return CompletionChunks(chunks, _headers(response))
    assert isinstance(response, BytesResponse), type(response)
    return CompletionReply(_decode_text_completion(response.content), _headers(response))


async def run_embeddings(
    request: Request[Any, Any, Any], body: dict[str, Any], *, route: str
) -> tuple[EmbeddingResponse, dict[str, str]]:
    """The ``/v1/embeddings`` answer to ``body``, and the gateway's headers."""
    state: AppState = request.app.state.switchyard
    response = await state.gateway.serve(EMBEDDINGS, request, _encode(body), route=route)
    assert isinstance(response, BytesResponse), type(response)
    return _decode_embeddings(response.content), _headers(response)


async def _chunks(
    events: AsyncIterator[bytes], decode: Callable[[bytes], Any] = _decode_chunk
) -> AsyncIterator[Any]:
    """The chunks of the gateway's SSE output: blocks of complete ``data:`` events (see
    ``proxy.streaming``), so a plain split is a complete parser for them."""
    async with aclosing(events) as blocks:  # type: ignore[type-var]
        async for block in blocks:
            for event in block.split(b"\n\n"):
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == _DONE:
                        return
                    if payload.startswith(b'{"error"'):
                        failure = _decode_error_frame(payload).error
                        if failure is not None:
                            raise StreamFailed(failure)
                    yield decode(payload)
    raise UpstreamError("The stream ended before it was complete.")


def event_stream(
    events: AsyncIterator[bytes],
    headers: dict[str, str],
    *,
    shutdown_frame: bytes | Callable[[], bytes],
    media_type: str = "text/event-stream",
) -> EventStreamResponse:
    """A dialect's streaming response: ``events`` (already encoded), the gateway's
    ``headers``, and the frame written when the shutdown drain ends it early (or a
    function that makes it then)."""
    extra = SSE_HEADERS if media_type == "text/event-stream" else {"Cache-Control": "no-cache"}
    return EventStreamResponse(
        events, {**extra, **headers}, shutdown_frame=shutdown_frame, media_type=media_type
    )


def is_native(
    request: Request[Any, Any, Any], model: str, dialect: str, body: dict[str, Any]
) -> bool:
    """Whether the request (its ``model``, its client ``body``) is passed through: every
    deployment of the model speaks ``dialect`` itself, and the request turns on no
    extension (a persona, session, RAG or tools work on the chat request, so such a
    request is translated). Unknown models are not native."""
    base, activation = read_activation(model, request.headers, dict(body))
    if activation or base != model:
        return False
    state: AppState = request.app.state.switchyard
    try:
        deployments = state.gateway.router.deployments_of(model)
    except SwitchyardError:
        return False
    return bool(deployments) and all(dialect in d.adapter.config.native for d in deployments)


async def passthrough(
    request: Request[Any, Any, Any],
    dialect: str,
    raw: bytes,
    *,
    route: str,
    stream_response: Callable[[AsyncIterator[bytes]], Response[Any]],
) -> Response[Any]:
    """Pass the client's ``raw`` request in ``dialect`` to the model's upstream as is.

    Admission (limits, budgets, allowed models) and the router (retries, fallbacks,
    cooldowns) are the chat route's; ``stream_response`` wraps the upstream's events
    (the dialect's SSE headers and shutdown frame)."""
    state: AppState = request.app.state.switchyard
    gateway = state.gateway
    info = request_info(request.scope)
    info.route = route
    envelope = decode_request(raw, NativeRequest)
    model = envelope.model
    await gateway.tenancy.admit(info, model, body=envelope.body)
    info.model = model
    stats = info.stats
    if envelope.params.stream:
        info.stream = True

        def start(adapter: Adapter) -> AsyncIterator[bytes]:
            return adapter.native_stream(dialect, envelope, stats)

        events = await gateway.router.open_stream(model, Capability.CHAT, start, stats)
        return stream_response(events)

    def invoke(adapter: Adapter) -> Awaitable[RawJSON]:
        return stopped_on_disconnect(
            adapter, request.receive, adapter.native(dialect, envelope, stats)
        )

    return json_response(await gateway.router.call(model, Capability.CHAT, invoke, stats))
