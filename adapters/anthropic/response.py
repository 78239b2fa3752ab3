"""An Anthropic message, or its event stream, as a chat completion (pure translation).

RULES (Anthropic -> OpenAI):

- ``text`` blocks, joined, are the message's ``content`` (``null`` when the model only
  called tools); each ``tool_use`` block is a ``tool_calls`` entry with the block's
  ``id`` and ``name`` and ``arguments`` = the JSON of its ``input``. Blocks with no chat
  equivalent (``thinking``, ``redacted_thinking``, server tool blocks) are left out.
  A known limit follows: with ``thinking`` on, the API wants an assistant turn's
  thinking blocks back before its ``tool_use``, and a Chat Completions client has no way
  to return them, so the turn after a tool call is refused (a 400 from Anthropic).
- ``stop_reason``: ``end_turn``, ``stop_sequence`` and ``pause_turn`` -> ``stop``;
  ``max_tokens`` and ``model_context_window_exceeded`` -> ``length``; ``tool_use`` ->
  ``tool_calls``; ``refusal`` -> ``content_filter``.
- ``usage``: every input token (uncached + cache written + cache read) ->
  ``prompt_tokens``; ``output_tokens`` -> ``completion_tokens``.
- The completion keeps Anthropic's message ``id`` and ``model``.

Streams (``ChunkTranslator``): ``message_start`` -> the first chunk (``role``, empty
content); ``text_delta`` -> content deltas; a ``tool_use`` block's start -> a tool call
delta with its ``index`` (counted over the tool_use blocks), ``id``, ``type`` and
``name`` and empty arguments, then its ``input_json_delta`` fragments as argument
deltas (a tool whose input streamed as nothing gets ``{}``); ``message_delta`` carries
the stop reason and the cumulative usage; ``message_stop`` -> the finish chunk, then the
usage chunk (no choices) when the client asked for it. ``ping`` and unknown events are
skipped; an ``error`` event raises its typed error.
"""

from __future__ import annotations

import msgspec

from adapters.anthropic.errors import error_from_event
from adapters.anthropic.wire import Block, Message, StreamEvent, Usage, UsageTally
from proxy.errors import UpstreamError
from proxy.schemas.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    ToolCallFunction,
)
from proxy.schemas.chat import Usage as ChatUsage

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_encode = msgspec.json.Encoder().encode


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def chat_usage(prompt_tokens: int, completion_tokens: int) -> ChatUsage:
    return ChatUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def _arguments(block: Block) -> str:
    return _encode(block.input or {}).decode()


def to_chat_completion(message: Message, *, created: int) -> ChatCompletion:
    """The chat completion of a non-streamed Anthropic ``message``."""
    texts = [b.text for b in message.content if b.type == "text" and b.text is not None]
    calls = [
        ToolCall(
            id=b.id or "", function=ToolCallFunction(name=b.name or "", arguments=_arguments(b))
        )
        for b in message.content
        if b.type == "tool_use"
    ]
    content = "".join(texts) if texts or not calls else None
    usage = message.usage or Usage()
    reply = ResponseMessage(role="assistant", content=content, tool_calls=calls or msgspec.UNSET)
    return ChatCompletion(
        id=message.id,
        created=created,
        model=message.model,
        choices=[Choice(index=0, message=reply, finish_reason=finish_reason(message.stop_reason))],
        usage=chat_usage(usage.prompt_tokens or 0, usage.output_tokens or 0),
    )


class ChunkTranslator:
    """Turns one Anthropic event stream into chat completion chunks, event by event.

    ``feed`` returns the chunks an event produces (often none); ``done`` says whether
    ``message_stop`` was seen; ``usage`` is the usage reported so far.
    """

    __slots__ = (
        "_arguments_seen",
        "_tools",
        "created",
        "done",
        "id",
        "include_usage",
        "model",
        "stop_reason",
        "usage",
    )

    def __init__(self, *, created: int, include_usage: bool) -> None:
        self.created = created
        self.include_usage = include_usage
        self.id = ""
        self.model = ""
        self.usage = UsageTally()
        self.stop_reason: str | None = None
        self.done = False
        #: Content block index -> (tool call index, its start's input) of tool_use blocks.
        self._tools: dict[int, tuple[int, dict[str, object] | None]] = {}
        self._arguments_seen: set[int] = set()

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
        )

    def _arguments_chunk(self, tool_index: int, arguments: str) -> ChatCompletionChunk:
        call = ToolCallDelta(index=tool_index, function=ToolCallFunction(arguments=arguments))
        return self._chunk(Delta(tool_calls=[call]))

    def feed(self, event: StreamEvent) -> list[ChatCompletionChunk]:
        kind = event.type
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "message_start":
            message = event.message
            if message is None:
                raise UpstreamError("The Anthropic upstream sent message_start without a message.")
            self.id, self.model = message.id, message.model
            self.usage.update(message.usage)
            return [self._chunk(Delta(role="assistant", content=""))]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_stop":
            return self._block_stop(event)
        if kind == "message_delta":
            if event.delta is not None and event.delta.stop_reason is not None:
                self.stop_reason = event.delta.stop_reason
            self.usage.update(event.usage)
            return []
        if kind == "message_stop":
            self.done = True
            chunks = [self._chunk(Delta(), finish_reason(self.stop_reason))]
            if self.include_usage:
                usage = chat_usage(self.usage.prompt_tokens, self.usage.output)
                chunks.append(
                    ChatCompletionChunk(
                        id=self.id, created=self.created, model=self.model, choices=[], usage=usage
                    )
                )
            return chunks
        if kind == "error":
            raise error_from_event(event.error)
        return []  # ping, and event types added to the API later

    def _block_start(self, event: StreamEvent) -> list[ChatCompletionChunk]:
        block = event.content_block
        if block is None or event.index is None:
            return []
        if block.type == "text" and block.text:
            return [self._chunk(Delta(content=block.text))]
        if block.type != "tool_use":
            return []
        tool_index = len(self._tools)
        self._tools[event.index] = (tool_index, block.input)
        function = ToolCallFunction(name=block.name or "", arguments="")
        call = ToolCallDelta(
            index=tool_index, id=block.id or "", type="function", function=function
        )
        return [self._chunk(Delta(tool_calls=[call]))]

    def _delta(self, event: StreamEvent) -> list[ChatCompletionChunk]:
        delta = event.delta
        if delta is None:
            return []
        if delta.type == "text_delta" and delta.text:
            return [self._chunk(Delta(content=delta.text))]
        if delta.type == "input_json_delta" and delta.partial_json:
            tool = self._tools.get(event.index if event.index is not None else -1)
            if tool is None:
                return []
            self._arguments_seen.add(tool[0])
            return [self._arguments_chunk(tool[0], delta.partial_json)]
        return []  # thinking, signature and citations deltas have no chat equivalent

    def _block_stop(self, event: StreamEvent) -> list[ChatCompletionChunk]:
        """A tool whose input never streamed: its arguments are its start's input, or {}."""
        tool = self._tools.get(event.index if event.index is not None else -1)
        if tool is None or tool[0] in self._arguments_seen:
            return []
        return [self._arguments_chunk(tool[0], _encode(tool[1] or {}).decode())]
