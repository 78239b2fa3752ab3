"""Anthropic Messages API wire types: what the adapter reads from the upstream.

Field names follow the official SDK (``anthropic/types``: ``Message``, ``Usage``,
``RawMessageStreamEvent`` and its members, ``ContentBlock``). The types are loose on
purpose: an unknown content block or event ``type`` decodes (its fields are simply
absent) so that a block or event added to the API later is skipped, not an error, as
Anthropic's versioning policy asks of clients.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Usage(msgspec.Struct):
    """``Usage`` of a message, or the cumulative ``MessageDeltaUsage`` of a stream."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    @property
    def prompt_tokens(self) -> int | None:
        """Every input token (Anthropic: the sum of the uncached, written and read ones),
        which is what OpenAI's ``prompt_tokens`` counts; None when none is reported."""
        parts = (self.input_tokens, self.cache_creation_input_tokens, self.cache_read_input_tokens)
        if all(part is None for part in parts):
            return None
        return sum(part or 0 for part in parts)


class UsageTally:
    """A stream's usage so far: ``message_start`` reports the input, each
    ``message_delta`` the cumulative counts of the fields it carries. Fields are kept
    one by one, so a delta that leaves one out does not reset it."""

    __slots__ = ("cache_creation", "cache_read", "input", "output")

    def __init__(self) -> None:
        self.input = self.cache_creation = self.cache_read = self.output = 0

    def update(self, usage: Usage | None) -> bool:
        """Take what ``usage`` reports; whether it reported anything."""
        if usage is None:
            return False
        if usage.input_tokens is not None:
            self.input = usage.input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_creation = usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        if usage.output_tokens is not None:
            self.output = usage.output_tokens
        return True

    @property
    def prompt_tokens(self) -> int:
        return self.input + self.cache_creation + self.cache_read


class Block(msgspec.Struct):
    """A content block of a response (``text``, ``tool_use``, ``thinking``, ...)."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None


class Message(msgspec.Struct):
    """A complete ``message`` (the non-streaming answer, or ``message_start``'s)."""

    id: str
    model: str = ""
    content: list[Block] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None


class ErrorObject(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class ErrorResponse(msgspec.Struct):
    """``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``"""

    error: ErrorObject | None = None
    request_id: str | None = None


class Delta(msgspec.Struct):
    """``content_block_delta``'s delta (``text_delta``, ``input_json_delta``, ...) or
    ``message_delta``'s (``stop_reason``, ``stop_sequence``): one loose type for both."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class StreamEvent(msgspec.Struct):
    """Any stream event; ``type`` says which of the other fields it carries."""

    type: str
    index: int | None = None
    message: Message | None = None
    content_block: Block | None = None
    delta: Delta | None = None
    usage: Usage | None = None
    error: ErrorObject | None = None


class UsageProbe(msgspec.Struct):
    """Only ``usage`` of a non-streamed message (a pass-through reads nothing else)."""

    usage: Usage | None = None


decode_message = msgspec.json.Decoder(Message).decode
decode_event = msgspec.json.Decoder(StreamEvent).decode
decode_error = msgspec.json.Decoder(ErrorResponse).decode
decode_usage = msgspec.json.Decoder(UsageProbe).decode
