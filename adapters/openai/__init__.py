"""Any OpenAI-compatible upstream: OpenAI, vLLM, Ollama, llama.cpp's server, LM Studio, ...

The client's JSON body is forwarded with only ``model`` replaced, so every parameter,
including ones Switchyard has never heard of, reaches the upstream. Responses and
stream events are forwarded as the upstream's own bytes; they are parsed only far
enough to reject malformed data and read token usage.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec

from adapters.base import Adapter, CallStats, Capability, DeploymentConfig, RawJSON
from adapters.openai.audio import AudioPassthrough
from adapters.openai.forms import post_form
from adapters.openai.rerank import check_rerank_body
from adapters.openai.upstream import (
    error_from_response,
    probe_responses_usage,
    probe_usage,
    responses_events,
    sse_events,
)
from adapters.transport import Timeouts, mapped_transport_errors
from proxy.media.uploads import FormEnvelope
from proxy.schemas.base import Envelope, NativeRequest

_encode = msgspec.json.Encoder().encode
#: The upstream path of each dialect the adapter passes through (``native: [responses]``).
_NATIVE_PATHS = {"responses": "/responses"}
#: Longest wait for a health probe's answer (or the model's own timeout, if shorter).
_PROBE_TIMEOUT_S = 10.0


class OpenAIConfig(DeploymentConfig, kw_only=True, forbid_unknown_fields=True):
    base_url: str = "https://api.openai.com/v1"
    """The upstream's OpenAI-compatible root, usually ending in /v1."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer``; use ``env:NAME`` to read it from the environment."""
    timeout_s: float = 600.0
    """Longest wait for any read from the upstream (the whole non-streamed answer, or the
    gap between two stream events)."""
    connect_timeout_s: float | None = None
    """Connect timeout; defaults to ``http.connect_timeout_s``."""
    headers: dict[str, str] = {}
    """Extra headers sent upstream (e.g. ``OpenAI-Organization``)."""
    capabilities: list[Capability] | None = None
    """What this upstream offers, e.g. ``[chat, embeddings]`` for a chat-only provider, so
    that other requests get a clear 400 here; unset: everything the adapter passes on
    except ``rerank``. ``rerank`` is opt-in (OpenAI itself has no ``/rerank``): list it
    for an upstream with a Cohere/Jina-compatible ``POST {base_url}/rerank`` (Jina,
    llama-server with ``--reranking``, vLLM, TEI, ...) and ``/v1/rerank`` is passed
    through to it; without it, a deployment with ``embeddings`` reranks by cosine
    similarity of its embeddings (``proxy.rerank``)."""
    stream_usage: bool = True
    """Ask the upstream for a stream's token usage (``stream_options.include_usage``) even
    when the client did not, so usage, TPM and budgets count streamed requests; the usage
    chunk is then kept from the client. ``false`` for an upstream that refuses the option
    (its streams are then counted only when the client asks for usage)."""


class OpenAIAdapter(AudioPassthrough, Adapter):
    name = "openai"
    Config = OpenAIConfig
    capabilities = frozenset(
        {Capability.CHAT, Capability.COMPLETIONS, Capability.EMBEDDINGS, Capability.IMAGES}
        | {Capability.TRANSCRIPTION, Capability.SPEECH}
    )
    native_dialects = frozenset(_NATIVE_PATHS)
    #: Offered only when a deployment's ``capabilities`` names them.
    opt_in = frozenset({Capability.RERANK})

    def __init__(self, config: DeploymentConfig, resources: Any) -> None:
        super().__init__(config, resources)
        assert isinstance(config, OpenAIConfig)
        self.cfg = config
        if config.capabilities is not None:
            offered = type(self).capabilities | self.opt_in
            self.capabilities = frozenset(config.capabilities) & offered  # type: ignore[misc]
        self._base = config.base_url.rstrip("/")
        headers = {"content-type": "application/json", **config.headers}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._headers = headers
        connect = config.connect_timeout_s or resources.settings.http.connect_timeout_s
        self._timeouts = Timeouts(connect=connect, read=config.timeout_s)

    @property
    def label(self) -> str:
        return f"{self.name}:{httpx.URL(self._base).host}/{self.cfg.upstream_model}"

    async def probe(self) -> None:
        """``GET {base_url}/models``: every OpenAI-compatible server answers it, cheaply.

        Any answer but a 5xx, 429, 401 or 403 means the upstream is there and takes the
        key (a server without the route answers 404, and is still up).
        """
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        timeout = httpx.Timeout(
            min(self.cfg.timeout_s, _PROBE_TIMEOUT_S), connect=self._timeouts.connect
        )
        with mapped_transport_errors(self.config.name):
            response = await self.resources.http.get(
                self._base + "/models", headers=headers, timeout=timeout
            )
        if response.status_code >= 500 or response.status_code in (401, 403, 429):
            raise error_from_response(response.status_code, response.content, response.headers)

    async def _post(
        self,
        path: str,
        envelope: Envelope[Any],
        stats: CallStats,
        probe: Callable[[bytes, CallStats], object] = probe_usage,
    ) -> RawJSON:
        """POST the body to ``path``; the answer as is, its usage read by ``probe``."""
        content = _encode(envelope.upstream_body(self.cfg.upstream_model))
        started = time.perf_counter()
        try:
            status, headers, body = await self.resources.upstream.post(
                self._base + path, content, self._headers, self._timeouts, self.config.name
            )
        finally:
            stats.upstream_s += time.perf_counter() - started
        if status >= 400:
            raise error_from_response(status, body, headers)
        probe(body, stats)
        return RawJSON(body)

    async def _stream(
        self, path: str, envelope: Envelope[Any], stats: CallStats
    ) -> AsyncIterator[bytes]:
        body = envelope.upstream_body(self.cfg.upstream_model)
        hide_usage = self.cfg.stream_usage and not envelope.params.wants_usage_chunk
        if hide_usage:
            options = body.get("stream_options")
            given = options if isinstance(options, dict) else {}
            body = {**body, "stream_options": {**given, "include_usage": True}}
        content = _encode(body)
        started = time.perf_counter()
        reply = await self.resources.upstream.stream(
            self._base + path, content, self._headers, self._timeouts, self.config.name
        )
        complete = False
        try:
            if reply.status >= 400:
                raise error_from_response(reply.status, await reply.read(), reply.headers)
            first = True
            events = sse_events(reply.chunks(), stats, self.config.name, hide_usage=hide_usage)
            async for block in events:
                if first:
                    stats.upstream_s += time.perf_counter() - started
                    first = False
                yield block
            complete = True
        finally:
            await reply.release(complete=complete)

    async def chat(self, request: Envelope[Any], stats: CallStats) -> RawJSON:
        return await self._post("/chat/completions", request, stats)

    def chat_stream(self, request: Envelope[Any], stats: CallStats) -> AsyncIterator[bytes]:
        return self._stream("/chat/completions", request, stats)

    async def native(
        self, dialect: str, request: Envelope[NativeRequest], stats: CallStats
    ) -> RawJSON:
        """The Responses API body to ``{base_url}/responses``; usage from its
        ``input_tokens``/``output_tokens``."""
        return await self._post(_NATIVE_PATHS[dialect], request, stats, probe_responses_usage)

    async def native_stream(
        self, dialect: str, request: Envelope[NativeRequest], stats: CallStats
    ) -> AsyncIterator[bytes]:
        content = _encode(request.upstream_body(self.cfg.upstream_model))
        started = time.perf_counter()
        reply = await self.resources.upstream.stream(
            self._base + _NATIVE_PATHS[dialect],
            content,
            self._headers,
            self._timeouts,
            self.config.name,
        )
        complete = False
        try:
            if reply.status >= 400:
                raise error_from_response(reply.status, await reply.read(), reply.headers)
            first = True
            async for block in responses_events(reply.chunks(), stats, self.config.name):
                if first:
                    stats.upstream_s += time.perf_counter() - started
                    first = False
                yield block
            complete = True
        finally:
            await reply.release(complete=complete)

    async def complete(self, request: Envelope[Any], stats: CallStats) -> RawJSON:
        return await self._post("/completions", request, stats)

    def complete_stream(self, request: Envelope[Any], stats: CallStats) -> AsyncIterator[bytes]:
        return self._stream("/completions", request, stats)

    async def embed(self, request: Envelope[Any], stats: CallStats) -> RawJSON:
        return await self._post("/embeddings", request, stats)

    async def rerank(self, request: Envelope[Any], stats: CallStats) -> RawJSON:
        """``POST {base_url}/rerank`` when the deployment lists ``rerank`` (else the
        cosine fallback over ``/embeddings``); the upstream's answer is forwarded as is,
        once it has ``results``, and its usage is read from Jina's ``usage`` or
        Cohere's ``meta.billed_units``."""
        if Capability.RERANK not in self.capabilities:
            return await super().rerank(request, stats)  # type: ignore[return-value]
        content = _encode(request.upstream_body(self.cfg.upstream_model))
        started = time.perf_counter()
        try:
            status, headers, body = await self.resources.upstream.post(
                self._base + "/rerank", content, self._headers, self._timeouts, self.config.name
            )
        finally:
            stats.upstream_s += time.perf_counter() - started
        if status >= 400:
            raise error_from_response(status, body, headers)
        check_rerank_body(body, stats, self.config.name)
        return RawJSON(body)

    async def generate_images(self, request: Envelope[Any], stats: CallStats) -> RawJSON:
        return await self._post("/images/generations", request, stats)

    async def edit_images(self, request: FormEnvelope[Any], stats: CallStats) -> RawJSON:
        return await self._post_form("/images/edits", request, stats)

    async def image_variations(self, request: FormEnvelope[Any], stats: CallStats) -> RawJSON:
        return await self._post_form("/images/variations", request, stats)

    async def _post_form(self, path: str, form: FormEnvelope[Any], stats: CallStats) -> RawJSON:
        content, _ = await post_form(
            self.resources.http,
            self._base + path,
            form,
            upstream_model=self.cfg.upstream_model,
            headers=self._headers,
            timeouts=self._timeouts,
            model=self.config.name,
            stats=stats,
        )
        return RawJSON(content)
