"""Chat completions: ``POST /v1/chat/completions``.

Field names and shapes follow openai-python's ``types/chat``. Parameters that are only
forwarded (``audio``, ``modalities``, ``prediction``, ``reasoning_effort``, ...) need no
field here: they stay in the envelope's ``body`` and reach the upstream unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ToolCallFunction(WireResponse):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ToolCall(WireResponse):
    id: str
    function: ToolCallFunction
    type: Literal["function"] = "function"


class ChatMessage(WireRequest):
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | UnsetType = UNSET
    tool_calls: list[dict[str, Any]] | UnsetType = UNSET
    tool_call_id: str | UnsetType = UNSET


class FunctionDefinition(WireRequest):
    name: str
    description: str | UnsetType = UNSET
    parameters: dict[str, Any] | UnsetType = UNSET
    strict: bool | UnsetType | None = UNSET


class Tool(WireRequest):
    type: str
    function: FunctionDefinition


class StreamOptions(WireRequest):
    include_usage: bool | None = None


class ResponseFormat(WireRequest):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | UnsetType = UNSET


class ChatCompletionRequest(WireRequest):
    model: str
    messages: list[ChatMessage]
    stream: bool | None = False
    stream_options: StreamOptions | UnsetType | None = UNSET
    temperature: float | UnsetType | None = UNSET
    top_p: float | UnsetType | None = UNSET
    n: int | UnsetType | None = UNSET
    stop: str | list[str] | UnsetType | None = UNSET
    max_tokens: int | UnsetType | None = UNSET
    max_completion_tokens: int | UnsetType | None = UNSET
    seed: int | UnsetType | None = UNSET
    presence_penalty: float | UnsetType | None = UNSET
    frequency_penalty: float | UnsetType | None = UNSET
    logit_bias: dict[str, float] | UnsetType | None = UNSET
    logprobs: bool | UnsetType | None = UNSET
    top_logprobs: int | UnsetType | None = UNSET
    user: str | UnsetType = UNSET
    tools: list[Tool] | UnsetType | None = UNSET
    tool_choice: str | dict[str, Any] | UnsetType | None = UNSET
    parallel_tool_calls: bool | UnsetType | None = UNSET
    response_format: ResponseFormat | UnsetType | None = UNSET

    @property
    def wants_usage_chunk(self) -> bool:
        options = self.stream_options
        return isinstance(options, StreamOptions) and bool(options.include_usage)


class Usage(WireResponse):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(WireResponse):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | UnsetType = UNSET
    refusal: str | None = None


class Choice(WireResponse):
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None
    stop_reason: str | int | UnsetType | None = UNSET
    """vLLM's extension, also set by the local adapter: the stop sequence (or token id)
    that ended the output, when one did."""


class ChatCompletion(WireResponse):
    id: str
    created: int
    model: str
    choices: list[Choice]
    object: Literal["chat.completion"] = "chat.completion"
    usage: Usage | UnsetType = UNSET
    system_fingerprint: str | UnsetType | None = UNSET


class ToolCallDelta(WireResponse):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: ToolCallFunction | UnsetType = UNSET


class Delta(WireResponse):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    tool_calls: list[ToolCallDelta] | UnsetType = UNSET


class ChunkChoice(WireResponse):
    index: int
    delta: Delta
    finish_reason: str | None
    logprobs: dict[str, Any] | UnsetType | None = UNSET
    stop_reason: str | int | UnsetType | None = UNSET
    """As ``Choice.stop_reason``, on the chunk that finishes."""


class ChatCompletionChunk(WireResponse):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: Usage | UnsetType | None = UNSET


class UsageCounts(msgspec.Struct):
    """The token counts of any endpoint's ``usage`` (embeddings report no completion)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class UsageProbe(msgspec.Struct):
    """Reads only ``usage`` out of an upstream body or chunk, skipping everything else."""

    usage: UsageCounts | None = None
