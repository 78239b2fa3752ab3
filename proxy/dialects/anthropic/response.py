"""The chat completion (or its chunk stream) as a Messages ``message`` (or its events): pure.

The rules are listed in the package docstring (``proxy.dialects.anthropic``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec

from proxy.dialects.anthropic.errors import stream_error
from proxy.dialects.anthropic.wire import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    DeltaUsage,
    InputJSONDelta,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StopDelta,
    StreamEvent,
    TextDelta,
    TextOut,
    ToolUseOut,
    Usage,
    sse,
)
from proxy.errors import SwitchyardError, UpstreamError
from proxy.schemas.base import UNSET
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk

log = logging.getLogger(__name__)

#: What a client sees when a stream fails on something that is not a SwitchyardError
#: (the exception's text is logged, never sent).
_UNEXPECTED = "The stream failed unexpectedly."

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id(chat_id: str) -> str:
    """``msg_`` and the chat completion's id without its ``chatcmpl-`` prefix."""
    return "msg_" + chat_id.removeprefix("chatcmpl-").removeprefix("chatcmpl_")


def tool_input(arguments: str | Any) -> dict[str, Any]:
    """A tool call's ``arguments`` JSON as the ``input`` object (empty: ``{}``)."""
    if arguments is UNSET or not str(arguments).strip():
        return {}
    try:
        value = _decode_object(str(arguments))
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamError("The model's tool call arguments are not a JSON object.") from None
    return value


class StopCut:
    """Finds the first of the client's ``stop_sequences`` in the output, for upstreams
    that do not apply ``stop`` themselves; text that may begin one is held back until it
    is known not to (so a stream never shows a stop sequence's start)."""

    def __init__(self, sequences: list[str]) -> None:
        self.sequences = [s for s in sequences if s]
        self.matched: str | None = None
        self._held = ""

    def push(self, text: str) -> str:
        """The text now safe to show; after a match, nothing more."""
        if self.matched is not None:
            return ""
        text = self._held + text
        if not self.sequences:
            self._held = ""
            return text
        found = [(text.find(s), -len(s), s) for s in self.sequences if s in text]
        if found:
            at, _, sequence = min(found)
            self.matched, self._held = sequence, ""
            return text[:at]
        keep = 0
        for s in self.sequences:
            for k in range(min(len(s) - 1, len(text)), keep, -1):
                if text.endswith(s[:k]):
                    keep = k
                    break
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        text, self._held = self._held, ""
        return text


def stop_of(finish_reason: str | None, reported: Any, cut: StopCut) -> tuple[str, str | None]:
    """``stop_reason`` and ``stop_sequence`` from the chat finish reason.

    A stop sequence is named when the upstream names it (the choice's ``stop_reason``,
    vLLM's field, which the local adapter sets too) and it is one of the client's, or
    when the output itself contained one (``cut``: an upstream that ignored ``stop``).
    Otherwise a ``stop`` is ``end_turn``: an upstream that applies ``stop`` without
    saying so cannot be told apart from the model's own end.
    """
    if cut.matched is not None:
        return "stop_sequence", cut.matched
    if finish_reason == "stop" and isinstance(reported, str) and reported in cut.sequences:
        return "stop_sequence", reported
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn"), None


def message_of(completion: ChatCompletion, model: str, stop_sequences: list[str]) -> Message:
    """The ``message`` for a chat completion (its first choice)."""
    choice = completion.choices[0] if completion.choices else None
    cut = StopCut(stop_sequences)
    content: list[TextOut | ToolUseOut] = []
    finish: str | None = None
    reported: Any = None
    if choice is not None:
        finish = choice.finish_reason
        reported = choice.stop_reason
        text = cut.push(choice.message.content or "")
        text += cut.flush() if cut.matched is None else ""
        if text:
            content.append(TextOut(text=text))
        calls = choice.message.tool_calls
        if calls is not UNSET and cut.matched is None:
            for call in calls:
                name = call.function.name
                try:
                    arguments = tool_input(call.function.arguments)
                except UpstreamError:
                    if finish == "length":
                        continue  # cut off by max_tokens mid-call: dropped, not an error
                    raise
                content.append(
                    ToolUseOut(
                        id=call.id, name=name if isinstance(name, str) else "", input=arguments
                    )
                )
    stop_reason, stop_sequence = stop_of(finish, reported, cut)
    usage = completion.usage
    return Message(
        id=message_id(completion.id),
        model=model,
        content=content,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        usage=Usage(
            input_tokens=usage.prompt_tokens if usage is not UNSET else 0,
            output_tokens=usage.completion_tokens if usage is not UNSET else 0,
        ),
    )


class EventWriter:
    """The Messages events of one chat chunk stream, block by block.

    A text block opens at the first text and a ``tool_use`` block at each tool call's
    first delta (which has its id and name); a block closes when another opens or the
    stream ends. ``ping`` follows the first ``content_block_start`` (as Anthropic sends
    it), or comes before ``message_delta`` when there was no block.
    """

    def __init__(self, model: str, stop_sequences: list[str]) -> None:
        self.model = model
        self.cut = StopCut(stop_sequences)
        self.index = -1
        self.open: str | None = None
        """``text``, ``tool`` or None: the kind of the block now open."""
        self.tools: dict[int, int] = {}
        """Chat tool call index -> block index."""
        self.pinged = False
        self.finish: str | None = None
        self.reported: Any = None
        self.input_tokens = 0
        self.output_tokens = 0

    def start(self, chat_id: str) -> list[StreamEvent]:
        message = Message(
            id=message_id(chat_id),
            model=self.model,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=Usage(input_tokens=0, output_tokens=0),
        )
        return [MessageStart(message=message)]

    def _close(self, out: list[StreamEvent]) -> None:
        if self.open is not None:
            out.append(ContentBlockStop(index=self.index))
            self.open = None

    def _open(self, block: TextOut | ToolUseOut, kind: str, out: list[StreamEvent]) -> None:
        self._close(out)
        self.index += 1
        self.open = kind
        out.append(ContentBlockStart(index=self.index, content_block=block))
        if not self.pinged:
            self.pinged = True
            out.append(Ping())

    def _text(self, text: str, out: list[StreamEvent]) -> None:
        if not text:
            return
        if self.open != "text":
            self._open(TextOut(text=""), "text", out)
        out.append(ContentBlockDelta(index=self.index, delta=TextDelta(text=text)))

    def chunk(self, chunk: ChatCompletionChunk) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        usage = chunk.usage
        if usage is not UNSET and usage is not None:
            self.input_tokens, self.output_tokens = usage.prompt_tokens, usage.completion_tokens
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.finish_reason is not None:
                self.finish = choice.finish_reason
                self.reported = choice.stop_reason
            delta = choice.delta
            if self.cut.matched is not None:
                continue  # the output ended at a stop sequence: the rest is not shown
            if isinstance(delta.content, str):
                self._text(self.cut.push(delta.content), out)
            if delta.tool_calls is UNSET:
                continue
            for call in delta.tool_calls:
                block = self.tools.get(call.index)
                function = call.function
                if block is None:
                    name = function.name if function is not UNSET else UNSET
                    self._text(self.cut.flush(), out)
                    self._open(
                        ToolUseOut(
                            id=call.id if call.id is not UNSET else f"toolu_{call.index}",
                            name=name if isinstance(name, str) else "",
                            input={},
                        ),
                        "tool",
                        out,
                    )
                    self.tools[call.index] = block = self.index
                pieces = function.arguments if function is not UNSET else UNSET
                # A piece for a block that is no longer open (interleaved calls) is lost.
                if isinstance(pieces, str) and pieces and block == self.index:
                    delta_json = InputJSONDelta(partial_json=pieces)
                    out.append(ContentBlockDelta(index=block, delta=delta_json))
        return out

    def end(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self.cut.matched is None:
            self._text(self.cut.flush(), out)
        self._close(out)
        if not self.pinged:
            out.append(Ping())
        stop_reason, stop_sequence = stop_of(self.finish, self.reported, self.cut)
        out.append(
            MessageDelta(
                delta=StopDelta(stop_reason=stop_reason, stop_sequence=stop_sequence),
                usage=DeltaUsage(output_tokens=self.output_tokens, input_tokens=self.input_tokens),
            )
        )
        out.append(MessageStop())
        return out


async def native_events(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A native upstream's events as they are; a failure after they began ends the stream
    with an ``error`` event, as a translated stream ends."""
    try:
        async with aclosing(events):  # type: ignore[type-var]
            async for block in events:
                yield block
    except SwitchyardError as failure:
        yield sse(stream_error(failure))
    except Exception:
        log.exception("native Messages stream failed after it began")
        yield sse(stream_error(UpstreamError(_UNEXPECTED)))


async def message_events(
    chunks: AsyncIterator[ChatCompletionChunk], model: str, stop_sequences: list[str]
) -> AsyncIterator[bytes]:
    """The SSE bytes of the Messages stream for a chat chunk stream; a failure after it
    began ends it with an ``error`` event. Closing this closes ``chunks``."""
    writer = EventWriter(model, stop_sequences)
    started = False
    try:
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                events = [] if started else writer.start(chunk.id)
                started = True
                events += writer.chunk(chunk)
                if events:
                    yield b"".join(sse(e) for e in events)
        if not started:
            yield b"".join(sse(e) for e in writer.start("chatcmpl-empty"))
        yield b"".join(sse(e) for e in writer.end())
    except Exception as exc:
        if isinstance(exc, SwitchyardError):
            failure = exc
        else:
            log.exception("Messages stream failed after it began")
            failure = UpstreamError(_UNEXPECTED)
        if not started:
            yield b"".join(sse(e) for e in writer.start("chatcmpl-failed"))
        yield sse(stream_error(failure))
