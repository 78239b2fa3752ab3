"""Chat chunks -> the Responses API's typed event stream (pure; rules in the package
docstring).

The order is the one OpenAI sends and openai-python's ``ResponseStreamState``
accumulates: ``response.created``, ``response.in_progress``; per output item
``response.output_item.added``, then for a message ``response.content_part.added``,
``response.output_text.delta``… ``response.output_text.done``,
``response.content_part.done``, for a function call
``response.function_call_arguments.delta``… ``response.function_call_arguments.done``,
then ``response.output_item.done``; and last ``response.completed`` (or
``response.incomplete`` when the output was cut, or ``response.failed`` when the
stream broke), every event with the next ``sequence_number`` from 0.

A native upstream's stream (``native_events``) is forwarded as it is; a failure after it
began (the upstream cut it, sent malformed data) ends it with the API's ``error`` event,
``sequence_number`` one past the upstream's last. The shutdown drain's frame is an
``error`` event too (``shutdown_frame``), numbered the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import msgspec

from proxy.dialects.responses.schemas import (
    FunctionCallItem,
    OutputMessage,
    OutputTextPart,
    Response,
    ResponseError,
)
from proxy.dialects.responses.translate import IdFactory, finished, new_id, response_usage
from proxy.errors import SwitchyardError, UpstreamError
from proxy.schemas.base import UNSET
from proxy.schemas.chat import ChatCompletionChunk, Usage

_to_builtins = msgspec.to_builtins
_encode = msgspec.json.Encoder().encode
log = logging.getLogger("switchyard.responses")

#: ``ResponseError.code`` values the SDK knows; any other error reads ``server_error``.
ERROR_CODES = frozenset(
    {"server_error", "rate_limit_exceeded", "invalid_prompt", "vector_store_timeout"}
    | {"invalid_image", "invalid_image_format", "invalid_base64_image", "invalid_image_url"}
    | {"image_too_large", "image_too_small", "image_parse_error", "empty_image_file"}
    | {"image_content_policy_violation", "invalid_image_mode", "image_file_too_large"}
    | {"unsupported_image_media_type", "failed_to_download_image", "image_file_not_found"}
)


class EventWriter:
    """The state of one translated stream: the output items so far, the next sequence
    number, and (once it ended) the final ``response``."""

    def __init__(self, shell: Response, make_id: IdFactory = new_id) -> None:
        self.response = shell
        self._make_id = make_id
        self._sequence = 0
        self._output: list[OutputMessage | FunctionCallItem] = []
        self._message: OutputMessage | None = None
        self._call: FunctionCallItem | None = None
        self._call_index: int | None = None

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _snapshot(self, **changes: Any) -> dict[str, Any]:
        return _to_builtins(msgspec.structs.replace(self.response, **changes))  # type: ignore[no-any-return]

    def start(self) -> list[dict[str, Any]]:
        shell = self._snapshot()
        return [
            self._event("response.created", response=shell),
            self._event("response.in_progress", response=shell),
        ]

    # -- messages

    def _open_message(self) -> list[dict[str, Any]]:
        message = OutputMessage(id=self._make_id("msg"), content=[], status="in_progress")
        self._message = message
        index = len(self._output)
        self._output.append(message)
        part = OutputTextPart(text="")
        message.content.append(part)
        return [
            self._event("response.output_item.added", output_index=index, item=_to_builtins(
                msgspec.structs.replace(message, content=[])
            )),
            self._event(
                "response.content_part.added",
                item_id=message.id,
                output_index=index,
                content_index=0,
                part=_to_builtins(part),
            ),
        ]  # fmt: skip

    def text(self, delta: str) -> list[dict[str, Any]]:
        events = self._close_call()
        if self._message is None:
            events += self._open_message()
        message = self._message
        assert message is not None
        message.content[0].text += delta
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=message.id,
                output_index=self._output.index(message),
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return events

    def _close_message(self, status: str = "completed") -> list[dict[str, Any]]:
        message = self._message
        if message is None:
            return []
        self._message = None
        message.status = status  # type: ignore[assignment]
        index = self._output.index(message)
        part = message.content[0]
        common = {"item_id": message.id, "output_index": index, "content_index": 0}
        return [
            self._event("response.output_text.done", **common, text=part.text, logprobs=[]),
            self._event("response.content_part.done", **common, part=_to_builtins(part)),
            self._event(
                "response.output_item.done", output_index=index, item=_to_builtins(message)
            ),
        ]

    # -- function calls

    def tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments: str | None
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._call is None or index != self._call_index:
            events += self._close_message() + self._close_call()
            call = FunctionCallItem(
                id=self._make_id("fc"),
                call_id=call_id or self._make_id("call"),
                name=name or "",
                arguments="",
                status="in_progress",
            )
            self._call, self._call_index = call, index
            self._output.append(call)
            events.append(
                self._event(
                    "response.output_item.added",
                    output_index=len(self._output) - 1,
                    item=_to_builtins(call),
                )
            )
        call = self._call
        if arguments:
            call.arguments += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call.id,
                    output_index=self._output.index(call),
                    delta=arguments,
                )
            )
        return events

    def _close_call(self) -> list[dict[str, Any]]:
        call = self._call
        if call is None:
            return []
        self._call = self._call_index = None
        call.status = "completed"
        index = self._output.index(call)
        return [
            self._event(
                "response.function_call_arguments.done",
                item_id=call.id,
                output_index=index,
                arguments=call.arguments,
            ),
            self._event("response.output_item.done", output_index=index, item=_to_builtins(call)),
        ]

    # -- the end

    def finish(self, finish_reason: str | None, usage: Usage | None) -> list[dict[str, Any]]:
        status, incomplete = finished(self.response, finish_reason)
        item_status = "incomplete" if status == "incomplete" else "completed"
        events = self._close_message(item_status) + self._close_call()
        self.response = msgspec.structs.replace(
            self.response,
            output=list(self._output),
            status=status,
            incomplete_details=incomplete,
            usage=response_usage(usage),
        )
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        events.append(self._event(kind, response=_to_builtins(self.response)))
        return events

    def fail(self, error: SwitchyardError) -> list[dict[str, Any]]:
        """``response.failed`` with what was output so far (items left open are cut)."""
        code = error.error_code if error.error_code in ERROR_CODES else "server_error"
        self.response = msgspec.structs.replace(
            self.response,
            output=list(self._output),
            status="failed",
            error=ResponseError(code=str(code), message=error.message),
        )
        return [self._event("response.failed", response=_to_builtins(self.response))]


async def translate_stream(
    chunks: AsyncIterator[ChatCompletionChunk], writer: EventWriter
) -> AsyncIterator[dict[str, Any]]:
    """The events for a chat chunk stream; a ``SwitchyardError`` from ``chunks`` (the
    gateway's ``StreamFailed``) ends it with ``response.failed``."""
    for event in writer.start():
        yield event
    finish_reason: str | None = None
    usage: Usage | None = None
    try:
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                if chunk.usage is not UNSET and chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices[:1]:
                    delta = choice.delta
                    if isinstance(delta.content, str) and delta.content:
                        for event in writer.text(delta.content):
                            yield event
                    for call in delta.tool_calls or ():
                        function = call.function if call.function is not UNSET else None
                        name = function.name if function is not None else UNSET
                        arguments = function.arguments if function is not None else UNSET
                        for event in writer.tool_call(
                            call.index,
                            call.id if call.id is not UNSET else None,  # type: ignore[arg-type]
                            name if name is not UNSET else None,  # type: ignore[arg-type]
                            arguments if arguments is not UNSET else None,  # type: ignore[arg-type]
                        ):
                            yield event
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
    except SwitchyardError as failure:
        for event in writer.fail(failure):
            yield event
        return
    except Exception:
        log.exception("responses stream failed after it began")
        for event in writer.fail(UpstreamError("The stream failed unexpectedly.")):
            yield event
        return
    for event in writer.finish(finish_reason, usage):
        yield event


# -- error events (a native stream's failure, the shutdown drain)

#: A top-level ``"sequence_number": N`` in an event's JSON; a string value holding the
#: same text is escaped (``\"sequence_number\"``), so it cannot match.
_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')


def sse_frame(event: dict[str, Any]) -> bytes:
    """One event as OpenAI frames it: ``event: <type>`` and ``data: <json>``."""
    return b"event: " + event["type"].encode() + b"\ndata: " + _encode(event) + b"\n\n"


def error_event(error: SwitchyardError, sequence_number: int) -> dict[str, Any]:
    """The ``error`` event (openai-python's ``ResponseErrorEvent``) for ``error``."""
    return {
        "type": "error",
        "code": error.error_code,
        "message": error.message,
        "param": error.param,
        "sequence_number": sequence_number,
    }


def shutdown_frame(sequence_number: int) -> bytes:
    """The frame written when the shutdown drain ends a stream."""
    return sse_frame(
        {
            "type": "error",
            "code": "server_shutting_down",
            "message": "The server is shutting down; the stream was ended before it finished.",
            "param": None,
            "sequence_number": sequence_number,
        }
    )


class NativeEvents:
    """A native upstream's event stream, forwarded block by block as it came, noting
    the last ``sequence_number`` seen so an event the gateway adds follows it.

    ``failed`` is told of a failure after the stream began (the request records it as
    its status) before the ``error`` event ends the stream."""

    def __init__(
        self, blocks: AsyncIterator[bytes], failed: Callable[[SwitchyardError], None]
    ) -> None:
        self._blocks = blocks
        self._failed = failed
        self.next_sequence = 0
        """One past the last upstream event's ``sequence_number`` (0 before any)."""

    def _note(self, block: bytes) -> None:
        numbers = _SEQUENCE.findall(block)
        if numbers:
            self.next_sequence = max(self.next_sequence, max(map(int, numbers)) + 1)

    def shutdown_frame(self) -> bytes:
        return shutdown_frame(self.next_sequence)

    async def stream(self) -> AsyncIterator[bytes]:
        """The blocks, then on a failure the ``error`` event; closing this closes them."""
        try:
            async with aclosing(self._blocks) as blocks:  # type: ignore[type-var]
                async for block in blocks:
                    self._note(block)
                    yield block
        except SwitchyardError as failure:
            log.warning("native responses stream failed after it began: %s", failure.message)
            error = failure
        except Exception:
            log.exception("native responses stream failed after it began")
            error = UpstreamError("The stream failed unexpectedly.")
        else:
            return
        self._failed(error)
        yield sse_frame(error_event(error, self.next_sequence))
