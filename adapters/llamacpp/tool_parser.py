"""Model output -> content and OpenAI tool-call deltas, as it streams.

The grammar (``tools.py``) makes the model write its calls as one list in one block,
``<tool_call>\\n[{"name": ..., "arguments": {...}}, ...]\\n</tool_call>``; the parser
also reads one call per block, as older prompts and hand-written histories have it.
A call is announced (id and name) once its name is complete, then its arguments
stream in pieces.

A call that repeats one already made in the same turn (same name, same arguments up
to whitespace) is dropped: small models tend to write the same call again and again.
While a call could still turn out to be such a repeat (its arguments so far are the
beginning of an earlier call's with the same name) it is held back, so nothing of it
reaches the client unless it differs; once a repeat is complete, ``repeated`` is set,
and the generation is stopped there (the model is looping, and every call it meant to
make has been made).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from adapters.llamacpp.prompts import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

_HEAD = re.compile(r'\s*(\[\s*)?\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_BETWEEN = re.compile(r"\s*\}?\s*([,\]])")


@dataclass(slots=True)
class ToolCallState:
    index: int
    id: str
    name: str
    arguments: str = ""
    complete: bool = False
    #: The arguments without whitespace outside strings (what "the same call" compares).
    compact: str = ""


@dataclass(slots=True)
class Events:
    """What one ``feed`` produced: content text, new calls, argument pieces by call."""

    content: str = ""
    started: list[ToolCallState] = field(default_factory=list)
    arguments: list[tuple[int, str]] = field(default_factory=list)


class ToolCallParser:
    """Incremental parser of ``content <tool_call>[{...}, ...]</tool_call>`` output."""

    def __init__(self) -> None:
        #: The calls given to the client (repeats are not among them), in index order.
        self.calls: list[ToolCallState] = []
        #: True once the output repeated a complete call: the generation should stop.
        self.repeated = False
        self._current: ToolCallState | None = None
        self._held = False
        self._in_list = False
        self._buffer = ""
        self._mode = "content"
        self._depth = 0
        self._in_string = False
        self._escape = False

    def feed(self, text: str) -> Events:
        events = Events()
        self._buffer += text
        while self._buffer:
            before = (self._mode, len(self._buffer))
            getattr(self, f"_{self._mode}")(events)
            if (self._mode, len(self._buffer)) == before:
                break
        return events

    def finish(self) -> Events:
        """End of output: whatever is still held back is content (or partial arguments)."""
        events = Events()
        if self._mode == "content" and self._buffer:
            events.content = self._buffer
        elif self._mode == "head" and not self._in_list and not self.calls:
            events.content = TOOL_CALL_OPEN + self._buffer
        elif self._mode == "arguments" and self._buffer:
            self._append_arguments(events, self._buffer)
        self._buffer = ""
        return events

    def _content(self, events: Events) -> None:
        if self.calls:
            self._buffer = self._buffer.lstrip()  # only whitespace separates calls
        at = self._buffer.find(TOOL_CALL_OPEN)
        if at >= 0:
            events.content += self._buffer[:at]
            self._buffer = self._buffer[at + len(TOOL_CALL_OPEN) :]
            self._mode = "head"
            return
        keep = 0
        for k in range(min(len(TOOL_CALL_OPEN) - 1, len(self._buffer)), 0, -1):
            if self._buffer.endswith(TOOL_CALL_OPEN[:k]):
                keep = k
                break
        events.content += self._buffer[: len(self._buffer) - keep]
        self._buffer = self._buffer[len(self._buffer) - keep :]

    def _head(self, events: Events) -> None:
        match = _HEAD.match(self._buffer)
        if match is None:
            return
        if match.group(1):
            self._in_list = True
        name = json.loads(f'"{match.group(2)}"')
        call = ToolCallState(-1, f"call_{uuid.uuid4().hex[:24]}", name)
        self._current = call
        self._held = any(c.name == name for c in self.calls)
        if not self._held:
            self._announce(events, call)
        self._buffer = self._buffer[match.end() :]
        self._mode, self._depth, self._in_string, self._escape = "arguments", 0, False, False

    def _announce(self, events: Events, call: ToolCallState) -> None:
        call.index = len(self.calls)
        self.calls.append(call)
        events.started.append(call)

    def _append_arguments(self, events: Events, text: str) -> None:
        call = self._current
        if not text or call is None:
            return
        call.arguments += text
        if self._held:
            if any(c.compact.startswith(call.compact) for c in self._same_name(call)):
                return
            self._held = False  # it differs from every earlier call: out it goes, whole
            self._announce(events, call)
            text = call.arguments
        if events.arguments and events.arguments[-1][0] == call.index:
            events.arguments[-1] = (call.index, events.arguments[-1][1] + text)
        else:
            events.arguments.append((call.index, text))

    def _same_name(self, call: ToolCallState) -> list[ToolCallState]:
        return [c for c in self.calls if c.name == call.name and c is not call]

    def _arguments(self, events: Events) -> None:
        call = self._current
        assert call is not None
        if not call.arguments:
            self._buffer = self._buffer.lstrip()
        end = None
        compact = []
        for i, ch in enumerate(self._buffer):
            if self._in_string:
                compact.append(ch)
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
                continue
            if not ch.isspace():
                compact.append(ch)
            if ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    end = i + 1
                    break
        call.compact += "".join(compact)
        if end is None:
            self._append_arguments(events, self._buffer)
            self._buffer = ""
            return
        self._append_arguments(events, self._buffer[:end])
        call.complete = True
        if self._held:  # still a prefix of an earlier call, and now complete: a repeat
            self.repeated = self.repeated or any(
                c.compact == call.compact for c in self._same_name(call)
            )
            if not self.repeated:
                self._held = False
                self._announce(events, call)
                events.arguments.append((call.index, call.arguments))
        self._current = None
        self._buffer = self._buffer[end:]
        self._mode = "tail"

    def _tail(self, events: Events) -> None:
        if self._in_list:
            match = _BETWEEN.match(self._buffer)
            if match is None:
                return
            self._buffer = self._buffer[match.end() :]
            if match.group(1) == ",":
                self._mode = "head"
                return
            self._in_list = False
        at = self._buffer.find(TOOL_CALL_CLOSE)
        if at >= 0:
            self._buffer = self._buffer[at + len(TOOL_CALL_CLOSE) :]
            self._mode = "content"
