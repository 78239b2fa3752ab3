"""Anthropic Messages wire types: the request, the ``message`` object and stream events.

Field names and shapes follow the official SDK's ``anthropic.types``
(``MessageCreateParams``, ``Message``, ``RawMessageStreamEvent``). Request types keep the
gateway's policy (unknown fields tolerated: ``cache_control`` on any block, fields of a
newer API version), so Claude Code's requests decode; content blocks are tagged unions on
``type``, so an unknown block type is a 400 naming where it is.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import msgspec

from proxy.errors import InvalidRequest
from proxy.schemas.base import UNSET, Envelope, UnsetType, WireRequest, WireResponse, decode_request

T = TypeVar("T", bound=WireRequest)

# ----------------------------------------------------------------------------- request


class Block(WireRequest, tag_field="type"):
    """Base of the content blocks a request may carry (``type`` is the tag)."""


class TextBlock(Block, tag="text"):
    text: str


class Base64Source(WireRequest, tag_field="type", tag="base64"):
    media_type: str
    data: str


class URLSource(WireRequest, tag_field="type", tag="url"):
    url: str


class ImageBlock(Block, tag="image"):
    source: Base64Source | URLSource


class ToolUseBlock(Block, tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(Block, tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | UnsetType = UNSET
    is_error: bool = False


class ThinkingBlock(Block, tag="thinking"):
    """The model's own reasoning in an earlier assistant turn (dropped when translated)."""

    thinking: str = ""
    signature: str = ""


class RedactedThinkingBlock(Block, tag="redacted_thinking"):
    data: str = ""


ContentBlock = (
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock
)


class InputMessage(WireRequest):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ToolParam(WireRequest):
    """A client tool. ``type`` is absent or ``custom``; Anthropic's server tools
    (``web_search_20250305``, ``bash_20250124``, ...) have other types."""

    name: str
    input_schema: dict[str, Any] | UnsetType = UNSET
    description: str | UnsetType = UNSET
    type: str | UnsetType | None = UNSET


class ToolChoice(WireRequest):
    type: Literal["auto", "any", "tool", "none"]
    name: str | UnsetType = UNSET
    disable_parallel_tool_use: bool | UnsetType = UNSET


class Metadata(WireRequest):
    user_id: str | UnsetType | None = UNSET


class OutputFormat(WireRequest):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfig(WireRequest):
    """Structured outputs (``format``); ``effort`` is Anthropic's own and is not passed on."""

    format: OutputFormat | UnsetType | None = UNSET


class CountTokensRequest(WireRequest, kw_only=True):
    """``POST /v1/messages/count_tokens``: what the model would read, no sampling."""

    model: str
    messages: list[InputMessage]
    system: str | list[TextBlock] | UnsetType = UNSET
    tools: list[ToolParam] | UnsetType = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    thinking: dict[str, Any] | UnsetType = UNSET


class MessagesRequest(CountTokensRequest, kw_only=True):
    """``POST /v1/messages``."""

    max_tokens: int
    stop_sequences: list[str] | UnsetType = UNSET
    stream: bool = False
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    top_k: int | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET
    output_config: OutputConfig | UnsetType = UNSET


# ---------------------------------------------------------------------------- response


class TextOut(WireResponse, tag_field="type", tag="text"):
    text: str


class ToolUseOut(WireResponse, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


class Usage(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class Message(msgspec.Struct):
    """The ``message`` object; ``stop_reason`` and ``stop_sequence`` are always written
    (``null`` in ``message_start``), as Anthropic writes them."""

    id: str
    model: str
    content: list[TextOut | ToolUseOut]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"


class TokenCount(msgspec.Struct):
    input_tokens: int


# ------------------------------------------------------------------------ stream events


class MessageStart(msgspec.Struct, tag_field="type", tag="message_start"):
    message: Message


class ContentBlockStart(msgspec.Struct, tag_field="type", tag="content_block_start"):
    index: int
    content_block: TextOut | ToolUseOut


class TextDelta(msgspec.Struct, tag_field="type", tag="text_delta"):
    text: str


class InputJSONDelta(msgspec.Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


class ContentBlockDelta(msgspec.Struct, tag_field="type", tag="content_block_delta"):
    index: int
    delta: TextDelta | InputJSONDelta


class ContentBlockStop(msgspec.Struct, tag_field="type", tag="content_block_stop"):
    index: int


class StopDelta(msgspec.Struct):
    stop_reason: str | None
    stop_sequence: str | None


class DeltaUsage(msgspec.Struct):
    """Cumulative counts (the SDK's accumulator overwrites the snapshot's with them)."""

    output_tokens: int
    input_tokens: int


class MessageDelta(msgspec.Struct, tag_field="type", tag="message_delta"):
    delta: StopDelta
    usage: DeltaUsage


class MessageStop(msgspec.Struct, tag_field="type", tag="message_stop"):
    pass


class Ping(msgspec.Struct, tag_field="type", tag="ping"):
    pass


class ErrorObject(msgspec.Struct):
    type: str
    message: str


class ErrorEvent(msgspec.Struct, tag_field="type", tag="error"):
    """The error body and the ``error`` stream event have the same shape."""

    error: ErrorObject


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorEvent
)

_encode = msgspec.json.Encoder().encode
_BLOCK_TYPE = re.compile(r"content\[\d+\](\.content\[\d+\])?\.type$")
_ROLE = re.compile(r"^messages\[\d+\]\.role$")
BLOCK_TYPES = "text, image, tool_use, tool_result, thinking, redacted_thinking"


def decode(raw: bytes, request_type: type[T]) -> Envelope[T]:
    """``decode_request``, with a clearer 400 for a content block of an unknown type."""
    try:
        return decode_request(raw, request_type)
    except InvalidRequest as exc:
        if exc.param is not None and _BLOCK_TYPE.search(exc.param):
            raise InvalidRequest(
                f"{exc.param}: this content block type is not supported here (the types "
                f"are: {BLOCK_TYPES}); {exc.message}",
                param=exc.param,
            ) from None
        if exc.param is not None and _ROLE.match(exc.param):
            raise InvalidRequest(
                f"{exc.param}: the roles are 'user' and 'assistant' (a system prompt goes in "
                f"the top-level 'system' field); {exc.message}",
                param=exc.param,
            ) from None
        raise


def sse(event: StreamEvent) -> bytes:
    """One SSE event with its ``event:`` line naming its type, as Anthropic sends it (the
    SDK skips events without one)."""
    name = type(event).__struct_config__.tag
    return b"event: " + str(name).encode() + b"\ndata: " + _encode(event) + b"\n\n"


def encode(value: Any) -> bytes:
    return _encode(value)
