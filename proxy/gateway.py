"""The request pipeline shared by the JSON endpoints: decode, route, call, respond.

An ``Endpoint`` names the request type, the capability, and the adapter methods that
serve it; ``Gateway.serve`` runs any endpoint the same way, so chat, completions and
embeddings differ only in their table row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response

from adapters.base import Adapter, Capability, RawJSON
from extensions.activation import read_activation, refuse_activation
from extensions.base import ChatCall
from extensions.pipeline import ExtensionPipeline
from proxy.cache.service import CACHE_ROUTES, BoundCache, ResponseCache
from proxy.context import request_info
from proxy.disconnect import stopped_on_disconnect
from proxy.rerank import rerank_capability
from proxy.responses import BytesResponse
from proxy.router import Router
from proxy.schemas.base import WireRequest, decode_request
from proxy.schemas.chat import ChatCompletionRequest
from proxy.schemas.completions import CompletionRequest
from proxy.schemas.embeddings import EmbeddingRequest
from proxy.schemas.rerank import RerankRequest
from proxy.schemas.tokenize import DetokenizeRequest, TokenizeRequest
from proxy.streaming import sse_response

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Endpoint:
    route: str
    request_type: type[WireRequest]
    capability: Capability
    method: str
    stream_method: str | None
    serving: Callable[[str, Iterable[Adapter]], Capability] | None = None
    """Chooses, per model, the capability whose deployments serve this endpoint (given
    the model name and its deployments' adapters); unset: always ``capability``."""


CHAT = Endpoint("chat", ChatCompletionRequest, Capability.CHAT, "chat", "chat_stream")
COMPLETIONS = Endpoint(
    "completions", CompletionRequest, Capability.COMPLETIONS, "complete", "complete_stream"
)
EMBEDDINGS = Endpoint("embeddings", EmbeddingRequest, Capability.EMBEDDINGS, "embed", None)
TOKENIZE = Endpoint("tokenize", TokenizeRequest, Capability.TOKENIZE, "tokenize", None)
DETOKENIZE = Endpoint("detokenize", DetokenizeRequest, Capability.TOKENIZE, "detokenize", None)
TOKENS_COUNT = Endpoint("tokens_count", TokenizeRequest, Capability.TOKENIZE, "count_tokens", None)
#: Rerankers, or else embedding models through the cosine fallback (``proxy.rerank``).
RERANK = Endpoint(
    "rerank", RerankRequest, Capability.RERANK, "rerank", None, serving=rerank_capability
)


def json_response(result: Any, status_code: int = 200) -> Response[bytes]:
    content = result.content if isinstance(result, RawJSON) else _encode(result)
    return BytesResponse(content, status_code=status_code)


def _prompt_text(body: dict[str, Any]) -> str:
    """The request's text, for the debug-only prompt log."""
    for key in ("messages", "prompt", "input"):
        if key in body:
            return _encode(body[key]).decode()[:4000]
    return ""


class Gateway:
    def __init__(
        self,
        router: Router,
        *,
        log_prompts: bool,
        tenancy: Any,
        extensions: ExtensionPipeline | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self.router = router
        self.tenancy = tenancy
        self.log_prompts = log_prompts
        self.extensions = extensions
        self.cache = cache
        self._cached = cache.models if cache is not None else {}
        """Cache-enabled models: a model not in it costs one dict lookup."""

    async def serve(
        self,
        endpoint: Endpoint,
        request: Request[Any, Any, Any],
        body: bytes | None = None,
        *,
        route: str | None = None,
    ) -> Response[Any]:
        """Serve ``endpoint`` for ``request``; ``body`` (with ``route``, its metrics label)
        replaces the request's own body: a dialect's request translated into this one."""
        info = request_info(request.scope)
        info.route = route or endpoint.route
        raw = await request.body() if body is None else body
        envelope = decode_request(raw, endpoint.request_type)
        model = envelope.model
        if self.log_prompts:
            info.prompt = _prompt_text(envelope.body)
        stats = info.stats
        if endpoint is CHAT and self.extensions is not None:
            base, activation = read_activation(model, request.headers, envelope.body)
            if activation or base != model:
                client_body = envelope.body

                async def admit(model: str, extensions: Iterable[str]) -> None:
                    await self.tenancy.admit(info, model, body=client_body, extensions=extensions)

                call = ChatCall(
                    envelope=envelope,  # type: ignore[arg-type]
                    activation=activation,
                    model=base,
                    key_id=info.key_id,
                    stream=bool(envelope.params.stream),  # type: ignore[attr-defined]
                    client_messages=list(envelope.body["messages"]),
                    receive=request.receive,
                    admit=admit,
                    permit=lambda name: self.tenancy.permit_extension(info, name),
                    team_id=info.team_id,
                    cache=BoundCache(self.cache, info) if self.cache is not None else None,
                )
                info.stream = call.stream
                response = await self.extensions.serve(call, stats)
                info.model = call.model
                return response
        if endpoint is not CHAT:
            refuse_activation(request.url.path, model, request.headers, envelope.body)
        await self.tenancy.admit(info, model, body=envelope.body)
        deployments = self.router.deployments_of(model)
        info.model = model
        capability = endpoint.capability
        if endpoint.serving is not None:
            capability = endpoint.serving(model, (d.adapter for d in deployments))

        streaming = bool(endpoint.stream_method and getattr(envelope.params, "stream", False))

        async def open_stream() -> AsyncIterator[Any]:
            info.stream = True
            method: str = endpoint.stream_method  # type: ignore[assignment]

            def start(adapter: Adapter) -> AsyncIterator[Any]:
                stream: Callable[..., AsyncIterator[Any]] = getattr(adapter, method)
                return stream(envelope, stats)

            return await self.router.open_stream(model, capability, start, stats)

        def invoke(adapter: Adapter) -> Awaitable[Any]:
            call: Callable[..., Awaitable[Any]] = getattr(adapter, endpoint.method)
            return stopped_on_disconnect(adapter, request.receive, call(envelope, stats))

        async def call_model() -> Any:
            return await self.router.call(model, capability, invoke, stats)

        if model in self._cached and endpoint.route in CACHE_ROUTES:
            assert self.cache is not None
            info.stream = streaming
            return await self.cache.serve(
                endpoint.route,
                info,
                model,
                envelope.body,
                streaming=streaming,
                include_usage=streaming and bool(envelope.params.wants_usage_chunk),  # type: ignore[attr-defined]
                call=call_model,
                open_stream=open_stream,
            )
        if streaming:
            return sse_response(await open_stream())
        return json_response(await call_model())
