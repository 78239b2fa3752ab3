"""Anthropic's Messages API as a chat backend: Claude models for OpenAI clients.

A chat request is translated into a ``POST /v1/messages`` body (``request``: the
rules are written there), the answer or event stream back into a chat completion or
chunk stream (``response``), and Anthropic's errors into the gateway's typed ones
(``errors``). ``/v1/tokens/count`` asks Anthropic's ``/v1/messages/count_tokens`` (the
adapter cannot tokenize: ``/v1/tokenize`` is a 400). Deployments saying
``native: [messages]`` pass the Messages dialect's requests through instead (``native``
/ ``native_stream``, and ``native_count_tokens`` for ``/v1/messages/count_tokens``): the
client's body with only ``model`` replaced, the upstream's answer and events unchanged.

Requests carry ``x-api-key`` and ``anthropic-version`` (``2023-06-01`` unless
configured), as Anthropic's API reference specifies, and the configured ``headers``; a
passed-through request carries its client's ``anthropic-version`` and
``anthropic-beta`` instead. They go through the shared upstream transport, which keeps
no cookies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import msgspec

from adapters.anthropic.errors import error_from_event, error_from_response
from adapters.anthropic.events import sse_events
from adapters.anthropic.request import to_count_tokens_body, to_messages_body
from adapters.anthropic.response import ChunkTranslator, to_chat_completion
from adapters.anthropic.wire import (
    StreamEvent,
    UsageTally,
    decode_event,
    decode_message,
    decode_usage,
)
from adapters.base import Adapter, CallStats, Capability, DeploymentConfig, RawJSON
from adapters.transport import StreamingReply, Timeouts, mapped_transport_errors
from proxy.errors import InvalidRequest, UpstreamError
from proxy.schemas.base import Envelope, validated
from proxy.schemas.chat import ChatCompletionRequest
from proxy.schemas.tokenize import TokenCountResponse
from proxy.telemetry.current import current

_encode = msgspec.json.Encoder().encode
#: Longest wait for a health probe's answer (or the model's own timeout, if shorter).
_PROBE_TIMEOUT_S = 10.0
MESSAGES_DIALECT = "messages"
_BETA = b"anthropic-beta"
_VERSION = b"anthropic-version"


class AnthropicConfig(DeploymentConfig, kw_only=True, forbid_unknown_fields=True):
    base_url: str = "https://api.anthropic.com"
    """The API's root, without ``/v1`` (as ``ANTHROPIC_BASE_URL`` is given); a trailing
    ``/v1`` is tolerated."""
    api_key: str | None = None
    """Sent as ``x-api-key``; use ``env:NAME`` (``env:ANTHROPIC_API_KEY``) to read it
    from the environment."""
    anthropic_version: str = "2023-06-01"
    """The ``anthropic-version`` header: the API version whose shapes this adapter reads."""
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 4096
    """``max_tokens`` sent when the client set neither ``max_tokens`` nor
    ``max_completion_tokens`` (the Messages API requires one)."""
    timeout_s: float = 600.0
    """Longest wait for any read from the upstream (the whole non-streamed answer, or the
    gap between two stream events)."""
    connect_timeout_s: float | None = None
    """Connect timeout; defaults to ``http.connect_timeout_s``."""
    headers: dict[str, str] = {}
    """Extra headers sent upstream (e.g. ``anthropic-beta``)."""


class _InputTokens(msgspec.Struct):
    input_tokens: int


_decode_count = msgspec.json.Decoder(_InputTokens).decode


class AnthropicAdapter(Adapter):
    name = "anthropic"
    Config = AnthropicConfig
    #: TOKENIZE for ``/v1/tokens/count`` only (Anthropic counts, it does not tokenize).
    capabilities = frozenset({Capability.CHAT, Capability.TOKENIZE})
    native_dialects = frozenset({MESSAGES_DIALECT})

    def __init__(self, config: DeploymentConfig, resources: Any) -> None:
        super().__init__(config, resources)
        assert isinstance(config, AnthropicConfig)
        self.cfg = config
        base = config.base_url.rstrip("/")
        self._base = base.removesuffix("/v1")
        headers = {
            "content-type": "application/json",
            "anthropic-version": config.anthropic_version,
            **config.headers,
        }
        if config.api_key:
            headers["x-api-key"] = config.api_key
        self._headers = headers
        connect = config.connect_timeout_s or resources.settings.http.connect_timeout_s
        self._timeouts = Timeouts(connect=connect, read=config.timeout_s)

    @property
    def label(self) -> str:
        return f"{self.name}:{httpx.URL(self._base).host}/{self.cfg.upstream_model}"

    async def probe(self) -> None:
        """``GET /v1/models``: cheap, and it checks the key. Any answer but a 5xx, 429,
        401 or 403 means the API is there and takes the key."""
        headers = {k: v for k, v in self._headers.items() if k != "content-type"}
        timeout = httpx.Timeout(
            min(self.cfg.timeout_s, _PROBE_TIMEOUT_S), connect=self._timeouts.connect
        )
        with mapped_transport_errors(self.config.name):
            response = await self.resources.http.get(
                self._base + "/v1/models", headers=headers, timeout=timeout
            )
        if response.status_code >= 500 or response.status_code in (401, 403, 429):
            raise error_from_response(response.status_code, response.content, response.headers)

    # -- the wire ----------------------------------------------------------------------

    async def _post(
        self,
        body: dict[str, Any],
        stats: CallStats,
        headers: dict[str, str] | None = None,
        path: str = "/v1/messages",
    ) -> bytes:
        started = time.perf_counter()
        try:
            status, answered, content = await self.resources.upstream.post(
                self._base + path,
                _encode(body),
                headers or self._headers,
                self._timeouts,
                self.config.name,
            )
        finally:
            stats.upstream_s += time.perf_counter() - started
        if status >= 400:
            raise error_from_response(status, content, answered)
        return content

    async def _events(
        self, body: dict[str, Any], stats: CallStats, headers: dict[str, str] | None = None
    ) -> AsyncIterator[list[tuple[bytes, StreamEvent | None]]]:
        """The upstream's events for ``body``, a batch at a time: each event's bytes and
        its decoded data (None for one without data). Ends after ``message_stop``; a
        stream that ends before it is an ``UpstreamError``."""
        started = time.perf_counter()
        reply: StreamingReply = await self.resources.upstream.stream(
            self._base + "/v1/messages",
            _encode(body),
            headers or self._headers,
            self._timeouts,
            self.config.name,
        )
        complete = False
        try:
            if reply.status >= 400:
                raise error_from_response(reply.status, await reply.read(), reply.headers)
            first = True
            async for batch in sse_events(reply.chunks()):
                if first:
                    stats.upstream_s += time.perf_counter() - started
                    first = False
                decoded = [(e.raw, self._decoded(e.data)) for e in batch]
                yield decoded
                if any(event is not None and event.type == "message_stop" for _, event in decoded):
                    complete = True
                    return
            raise UpstreamError(
                f"The upstream for '{self.config.name}' ended the stream before message_stop."
            )
        finally:
            await reply.release(complete=complete)

    def _decoded(self, data: bytes) -> StreamEvent | None:
        if not data:
            return None
        try:
            return decode_event(data)
        except msgspec.MsgspecError:
            raise UpstreamError(
                f"The upstream for '{self.config.name}' sent malformed SSE data: {data[:80]!r}"
            ) from None
        except RecursionError:
            raise UpstreamError(
                "The upstream answered with JSON nested too deeply to read."
            ) from None

    def _body(self, envelope: Envelope[Any], *, stream: bool) -> dict[str, Any]:
        return to_messages_body(
            envelope.params,
            envelope.body,
            model=self.cfg.upstream_model,
            default_max_tokens=self.cfg.default_max_tokens,
            stream=stream,
        )

    # -- chat --------------------------------------------------------------------------

    async def chat(self, request: Envelope[Any], stats: CallStats) -> Any:
        content = await self._post(self._body(request, stream=False), stats)
        try:
            message = decode_message(content)
        except (msgspec.MsgspecError, RecursionError):
            raise UpstreamError(
                f"The upstream for '{self.config.name}' answered something that is not a message."
            ) from None
        completion = to_chat_completion(message, created=int(time.time()))
        if completion.usage is not msgspec.UNSET:
            stats.add_usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)
        return completion

    async def chat_stream(self, request: Envelope[Any], stats: CallStats) -> AsyncIterator[Any]:
        body = self._body(request, stream=True)
        started = time.perf_counter()
        chunks = ChunkTranslator(
            created=int(time.time()), include_usage=request.params.wants_usage_chunk
        )
        async for batch in self._events(body, stats):
            for _, event in batch:
                if event is None:
                    continue
                out = chunks.feed(event)
                if event.type in ("message_start", "message_delta"):
                    stats.add_usage(chunks.usage.prompt_tokens, chunks.usage.output)
                if stats.first_token_s is None and event.type == "content_block_delta":
                    stats.first_token_s = time.perf_counter() - started
                for chunk in out:
                    yield chunk

    async def count_tokens(self, request: Envelope[Any], stats: CallStats) -> TokenCountResponse:
        """``/v1/tokens/count`` by Anthropic's ``POST /v1/messages/count_tokens``: the
        exact input tokens of the prompt, or of the chat messages and tools."""
        params = request.params
        prompt = params.prompt if isinstance(params.prompt, str) else None
        chat = None
        if prompt is None:
            if not isinstance(params.messages, list):
                raise InvalidRequest("Send either prompt or messages.", param="messages")
            fields = ("model", "messages", "tools", "tool_choice")
            chat = validated(
                {k: request.body[k] for k in fields if k in request.body}, ChatCompletionRequest
            )
        body = to_count_tokens_body(prompt, chat, request.body, model=self.cfg.upstream_model)
        content = await self._post(body, stats, path="/v1/messages/count_tokens")
        try:
            counted = _decode_count(content).input_tokens
        except (msgspec.MsgspecError, RecursionError):
            raise UpstreamError(
                f"The upstream for '{self.config.name}' answered no input_tokens count."
            ) from None
        return TokenCountResponse(count=counted)

    # -- the Messages dialect, passed through --------------------------------------------

    def _native_body(self, dialect: str, envelope: Envelope[Any]) -> dict[str, Any]:
        if dialect != MESSAGES_DIALECT:
            raise self._unsupported(Capability.CHAT)
        return envelope.upstream_body(self.cfg.upstream_model)

    def _native_headers(self) -> dict[str, str]:
        """The headers for a passed-through request: the body was written for its
        client's API version and beta features, so the client's ``anthropic-version``
        replaces the configured one and its ``anthropic-beta`` is added after the
        configured betas (Claude Code opts into features its bodies use that way)."""
        info = current()
        if info is None:
            return self._headers
        version = [v for k, v in info.headers if k == _VERSION]
        betas = [v.decode("latin-1") for k, v in info.headers if k == _BETA]
        if not version and not betas:
            return self._headers
        headers = dict(self._headers)
        if version:
            headers["anthropic-version"] = version[-1].decode("latin-1")
        if betas:
            configured = [v for k, v in self._headers.items() if k.lower() == "anthropic-beta"]
            headers = {k: v for k, v in headers.items() if k.lower() != "anthropic-beta"}
            headers["anthropic-beta"] = ",".join(configured + betas)
        return headers

    async def native(self, dialect: str, request: Envelope[Any], stats: CallStats) -> RawJSON:
        content = await self._post(
            self._native_body(dialect, request), stats, self._native_headers()
        )
        try:
            usage = decode_usage(content).usage
        except (msgspec.MsgspecError, RecursionError):
            raise UpstreamError(
                f"The upstream for '{self.config.name}' answered something that is not a message."
            ) from None
        if usage is not None:
            stats.add_usage(usage.prompt_tokens or 0, usage.output_tokens or 0)
        return RawJSON(content)

    async def native_count_tokens(
        self, dialect: str, request: Envelope[Any], stats: CallStats
    ) -> RawJSON:
        """The client's ``/v1/messages/count_tokens`` body (model replaced) to the
        upstream's, with the client's version and betas: a body with server tools or
        beta blocks counts as its ``/v1/messages`` request is served."""
        content = await self._post(
            self._native_body(dialect, request),
            stats,
            self._native_headers(),
            path="/v1/messages/count_tokens",
        )
        try:
            _decode_count(content)
        except (msgspec.MsgspecError, RecursionError):
            raise UpstreamError(
                f"The upstream for '{self.config.name}' answered no input_tokens count."
            ) from None
        return RawJSON(content)

    async def native_stream(
        self, dialect: str, request: Envelope[Any], stats: CallStats
    ) -> AsyncIterator[bytes]:
        """The upstream's events as they came, in batches of complete events; usage is
        read from ``message_start`` and ``message_delta``. An ``error`` event is raised
        as its typed error (the dialect writes it as its own error event) rather than
        forwarded, so the router and the metrics see the failure."""
        body = self._native_body(dialect, request)
        usage = UsageTally()
        async for batch in self._events(body, stats, self._native_headers()):
            forward: list[bytes] = []
            for raw, event in batch:
                if event is not None and event.type == "error":
                    if forward:
                        yield b"".join(forward)
                    raise error_from_event(event.error)
                if event is not None and event.type == "message_start" and event.message:
                    reported = usage.update(event.message.usage)
                elif event is not None and event.type == "message_delta":
                    reported = usage.update(event.usage)
                else:
                    reported = False
                if reported:
                    stats.add_usage(usage.prompt_tokens, usage.output)
                forward.append(raw)
            if forward:
                yield b"".join(forward)
