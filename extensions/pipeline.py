"""Serving a chat request that activates extensions (see ``extensions.base`` for the order).

This is the slower path by design: to let extensions see the answer, upstream bytes are
decoded here. Streams still go out as they arrive — events are only observed on the way
through (to rebuild the assistant message for ``after_response``), never held back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec
from litestar import Response

from adapters.base import Adapter, CallStats, Capability, RawJSON
from extensions.activation import KEYS
from extensions.base import ChatCall, Extension
from proxy.disconnect import stopped_on_disconnect
from proxy.errors import InvalidRequest, shown
from proxy.responses import BytesResponse
from proxy.router import Router
from proxy.schemas.base import UNSET
from proxy.streaming import sse_response
from proxy.telemetry import span

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def response_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, RawJSON):
        return _decode(result.content)  # type: ignore[no-any-return]
    return msgspec.to_builtins(result)  # type: ignore[no-any-return]


class ReplyBuilder:
    """Rebuilds the assistant message from stream chunks (first choice only)."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}

    def add_chunk(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = self.tool_calls.setdefault(
                    call.get("index", 0),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""

    def add_item(self, item: Any) -> None:
        for chunk in chunks_in(item):
            self.add_chunk(chunk)

    def reply(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return message


def chunks_in(item: Any) -> list[dict[str, Any]]:
    """The chunks of one stream item: a typed chunk, or SSE bytes from an upstream."""
    if not isinstance(item, bytes):
        return [msgspec.to_builtins(item)]
    chunks = []
    for line in item.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload and payload != b"[DONE]":
                chunks.append(_decode(payload))
    return chunks


def chunks_of(response: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A finished response as the stream of chunks a streaming client expects."""
    head = {
        "id": response.get("id", ""),
        "object": "chat.completion.chunk",
        "created": response.get("created", 0),
        "model": response.get("model", ""),
    }
    chunks = []
    for choice in response.get("choices") or ():
        message = choice.get("message") or {}
        index = choice.get("index", 0)
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {**call, "index": position} for position, call in enumerate(message["tool_calls"])
            ]
        chunks.append(
            {**head, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}
        )
        chunks.append(
            {
                **head,
                "choices": [
                    {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
                ],
            }
        )
    if include_usage and response.get("usage"):
        chunks.append({**head, "choices": [], "usage": response["usage"]})
    return chunks


class ExtensionPipeline:
    def __init__(self, extensions: list[Extension], router: Router) -> None:
        self.extensions = sorted(extensions, key=lambda e: e.order)
        self.router = router

    def known(self, name: str) -> bool:
        return any(e.name == name for e in self.extensions)

    async def serve(self, call: ChatCall, stats: CallStats) -> Response[Any]:
        active: list[Extension] = []
        for extension in self.extensions:
            # Evaluated one by one: validating a persona may switch on its default tools/RAG.
            if extension.active(call.activation):
                if call.permit is not None:
                    call.permit(extension.name)
                await extension.validate(call)
                active.append(extension)
        names = {e.name for e in active}
        for key in KEYS:
            if getattr(call.activation, key) and key not in names:
                raise InvalidRequest(
                    f"The '{key}' extension is not enabled on this server "
                    f"(requested: {shown(getattr(call.activation, key))}).",
                    param=key,
                )
        if not call.model:
            raise InvalidRequest(
                "No model: name one, or a persona that has a default model.", param="model"
            )
        if call.admit is not None:  # limits and budgets before any extension does work
            await call.admit(call.model, names)
        self.router.deployments_of(call.model)
        for extension in active:
            with span("extension.before_request", extension=extension.name):
                await extension.before_request(call)
        call.envelope.update(model=call.model)
        executor = next((e for e in active if e.executes), None)

        async def model_call(current: ChatCall) -> dict[str, Any]:
            return await self._complete(current, stats)

        async def stream_call(current: ChatCall) -> AsyncIterator[dict[str, Any]]:
            return await self._open_chunks(current, stats)

        if executor is not None and executor.streams and call.stream:
            chunks = await executor.execute_stream(call, model_call, stream_call)
            return sse_response(_observed(chunks, call, active), call.response_headers)
        # The cache answers only where no extension runs a tool loop (whose model calls
        # and tool results are not one answer); its key names the active extensions.
        found = None
        if executor is None and call.cache is not None:
            body = call.envelope.body
            found = await call.cache.lookup(call.model, body, sorted(names), call.activation)
            if found is not None:
                call.response_headers.update(found.headers)
        if executor is not None:
            response = await executor.execute(call, model_call)
        elif found is not None and found.content is not None:
            response = _decode(found.content)
        elif call.stream:
            return await self._stream(call, active, stats, found)
        else:
            response = await model_call(call)
            if found is not None:
                await call.cache.store(found, _encode(response))
        reply = _first_message(response)
        for extension in reversed(active):
            with span("extension.after_response", extension=extension.name):
                await extension.after_response(call, reply)
        if call.stream:
            include_usage = call.envelope.params.wants_usage_chunk
            return sse_response(_iterate(chunks_of(response, include_usage)), call.response_headers)
        if call.sources:
            response["switchyard"] = {"sources": call.sources}
        return BytesResponse(_encode(response), headers=call.response_headers)

    async def _complete(self, call: ChatCall, stats: CallStats) -> dict[str, Any]:
        """One non-streaming model call (a streaming request is asked for whole here)."""
        envelope = call.envelope
        if envelope.params.stream:
            envelope = _copy(envelope)
            envelope.update(stream=False, stream_options=UNSET)

        async def invoke(adapter: Adapter) -> Any:
            return await stopped_on_disconnect(adapter, call.receive, adapter.chat(envelope, stats))

        result = await self.router.call(call.model, Capability.CHAT, invoke, stats)
        return response_dict(result)

    async def _open_chunks(self, call: ChatCall, stats: CallStats) -> AsyncIterator[dict[str, Any]]:
        """One streaming model call with usage, opened (before its first chunk is read)."""
        envelope = _copy(call.envelope)
        envelope.update(stream=True, stream_options={"include_usage": True})

        def start(adapter: Adapter) -> AsyncIterator[Any]:
            return adapter.chat_stream(envelope, stats)

        items = await self.router.open_stream(call.model, Capability.CHAT, start, stats)
        return _decoded(items)

    async def _stream(
        self, call: ChatCall, active: list[Extension], stats: CallStats, found: Any
    ) -> Response[Any]:
        def start(adapter: Adapter) -> AsyncIterator[Any]:
            return adapter.chat_stream(call.envelope, stats)

        items = await self.router.open_stream(call.model, Capability.CHAT, start, stats)
        if found is not None and found.key:
            items = call.cache.storing(found, items)
        return sse_response(_observed(items, call, active), call.response_headers)


async def _observed(
    items: AsyncIterator[Any], call: ChatCall, active: list[Extension]
) -> AsyncIterator[Any]:
    """Pass items through untouched; when the stream completed, run ``after_response``."""
    builder = ReplyBuilder()
    async with aclosing(items):  # type: ignore[type-var]
        async for item in items:
            builder.add_item(item)
            yield item
    reply = builder.reply()
    for extension in reversed(active):
        await extension.after_response(call, reply)


async def _decoded(items: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    async with aclosing(items):  # type: ignore[type-var]
        async for item in items:
            for chunk in chunks_in(item):
                yield chunk


async def _iterate(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


def _first_message(response: dict[str, Any]) -> dict[str, Any]:
    choices = response.get("choices") or [{}]
    return choices[0].get("message") or {"role": "assistant", "content": None}


def _copy(envelope: Any) -> Any:
    return type(envelope)(envelope.params, dict(envelope.body))
