"""Constrained output: grammars for tool calls and ``response_format``, and the parser.

Tool calls are made reliable by a GBNF grammar built from the tools' JSON schemas
(llama-cpp-python's JSON-schema converter): each call is a ``<tool_call>`` block
holding ``{"name": <one of the tools>, "arguments": <that tool's schema>}``.

- ``required`` or a named tool: the grammar applies from the first token.
- ``auto``: the model writes freely; the grammar takes over if it opens a
  ``<tool_call>`` (a lazy grammar), or, with a JSON ``response_format`` too, the
  output is either tool calls or the JSON.
- ``none``: tools are not offered and nothing is parsed.

``ToolCallParser`` turns the text back into content and OpenAI tool-call deltas as it
streams: the id and name once the name is complete, then the arguments in pieces.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, SchemaConverter

from adapters.llamacpp.prompts import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, tools_system_text
from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET
from proxy.schemas.chat import ChatCompletionRequest, ResponseFormat

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(slots=True)
class OutputPlan:
    grammar: str | None = None
    trigger: str | None = None
    parse_tools: bool = False
    system_text: str | None = None


def _converter() -> SchemaConverter:
    return SchemaConverter(
        prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False, raw_pattern=False
    )


def _convert(converter: SchemaConverter, schema: Any, rule: str, param: str) -> str:
    if not isinstance(schema, dict):
        raise InvalidRequest("A JSON schema must be an object.", param=param)
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), rule)
        return str(converter.visit(resolved, rule))
    except Exception as exc:
        raise InvalidRequest(f"Unsupported JSON schema: {shown(exc)}", param=param) from None


def schema_grammar(schema: dict[str, Any], param: str) -> str:
    converter = _converter()
    _convert(converter, schema, "root", param)
    return str(converter.format_grammar())


def _response_schema(fmt: ResponseFormat) -> dict[str, Any] | None:
    """The schema a ``json_schema`` format names; None for ``json_object`` (any JSON)."""
    spec = fmt.json_schema
    if spec is UNSET or not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise InvalidRequest(
            "response_format json_schema needs json_schema.schema (an object).",
            param="response_format.json_schema",
        )
    return spec.get("schema") or _ANY_OBJECT


def _tool_functions(params: ChatCompletionRequest) -> list[dict[str, Any]]:
    tools = params.tools if params.tools not in (UNSET, None) else []
    functions = []
    for i, tool in enumerate(tools):  # type: ignore[union-attr]
        if tool.type != "function":
            raise InvalidRequest(
                f"Unsupported tool type '{shown(tool.type)}'.", param=f"tools[{i}].type"
            )
        functions.append({"type": "function", "function": _function_dict(tool.function)})
    return functions


def _function_dict(function: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": function.name}
    if function.description is not UNSET:
        out["description"] = function.description
    out["parameters"] = function.parameters if function.parameters is not UNSET else _ANY_OBJECT
    return out


def _choice(params: ChatCompletionRequest, names: list[str]) -> str | None:
    """``none``/``auto``/``required``, or the name of the one tool that must be called."""
    choice = params.tool_choice
    if choice in (UNSET, None):
        return "auto" if names else "none"
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequest(
                "tool_choice must be none, auto, required or a function.", param="tool_choice"
            )
        if choice != "none" and not names:
            raise InvalidRequest(f"tool_choice '{shown(choice)}' needs tools.", param="tool_choice")
        return choice
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or name not in names:
        raise InvalidRequest(
            f"tool_choice names function '{shown(name)}', which is not in tools.",
            param="tool_choice",
        )
    return f"function:{name}"


def plan_output(params: ChatCompletionRequest) -> OutputPlan:
    """The grammar and prompt additions a chat request needs."""
    functions = _tool_functions(params)
    names = [f["function"]["name"] for f in functions]
    choice = _choice(params, names)
    fmt = params.response_format
    json_rule: str | None = None
    converter = _converter()
    if isinstance(fmt, ResponseFormat) and fmt.type != "text":
        schema = _response_schema(fmt) if fmt.type == "json_schema" else None
        if schema is None:
            json_rule = "json-any"
        else:
            json_rule = _convert(converter, schema, "answer", "response_format.json_schema")
    if choice == "none" or choice is None:
        if json_rule is None:
            return OutputPlan()
        if json_rule == "json-any":
            return OutputPlan(grammar=JSON_GBNF)
        converter._add_rule("root", json_rule)
        return OutputPlan(grammar=converter.format_grammar())
    if choice.startswith("function:"):
        functions = [f for f in functions if f["function"]["name"] == choice[9:]]
    alternatives = []
    for i, f in enumerate(functions):
        fn = f["function"]
        call_schema = {
            "type": "object",
            "properties": {"name": {"const": fn["name"]}, "arguments": fn["parameters"]},
            "required": ["name", "arguments"],
        }
        alternatives.append(
            _convert(converter, call_schema, f"call{i}", f"tools[{i}].function.parameters")
        )
    converter._add_rule("call", " | ".join(alternatives))
    block = f'"{TOOL_CALL_OPEN}\\n" call "\\n{TOOL_CALL_CLOSE}"'
    parallel = params.parallel_tool_calls is not False
    converter._add_rule("tool-calls", f'{block} ("\\n" {block})*' if parallel else block)
    plan = OutputPlan(parse_tools=True, system_text=tools_system_text(functions))
    if choice == "auto" and json_rule is None:
        converter._add_rule("root", "tool-calls")
        plan.trigger = re.escape(TOOL_CALL_OPEN)
    elif choice == "auto":
        if json_rule == "json-any":
            json_rule = _convert(converter, _ANY_OBJECT, "answer", "response_format")
        converter._add_rule("root", f"tool-calls | {json_rule}")
    else:
        converter._add_rule("root", "tool-calls")
    plan.grammar = converter.format_grammar()
    return plan


_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


@dataclass(slots=True)
class ToolCallState:
    index: int
    id: str
    name: str
    arguments: str = ""
    complete: bool = False


@dataclass(slots=True)
class Events:
    """What one ``feed`` produced: content text, new calls, argument pieces by call."""

    content: str = ""
    started: list[ToolCallState] = field(default_factory=list)
    arguments: list[tuple[int, str]] = field(default_factory=list)


class ToolCallParser:
    """Incremental parser of ``content <tool_call>{...}</tool_call> ...`` output."""

    def __init__(self) -> None:
        self.calls: list[ToolCallState] = []
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
        elif self._mode == "head":
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
        name = json.loads(f'"{match.group(1)}"')
        call = ToolCallState(len(self.calls), f"call_{uuid.uuid4().hex[:24]}", name)
        self.calls.append(call)
        events.started.append(call)
        self._buffer = self._buffer[match.end() :]
        self._mode, self._depth, self._in_string, self._escape = "arguments", 0, False, False

    def _append_arguments(self, events: Events, text: str) -> None:
        if not text:
            return
        call = self.calls[-1]
        call.arguments += text
        if events.arguments and events.arguments[-1][0] == call.index:
            events.arguments[-1] = (call.index, events.arguments[-1][1] + text)
        else:
            events.arguments.append((call.index, text))

    def _arguments(self, events: Events) -> None:
        if not self.calls[-1].arguments:
            self._buffer = self._buffer.lstrip()
        end = None
        for i, ch in enumerate(self._buffer):
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    end = i + 1
                    break
        if end is None:
            self._append_arguments(events, self._buffer)
            self._buffer = ""
            return
        self._append_arguments(events, self._buffer[:end])
        self.calls[-1].complete = True
        self._buffer = self._buffer[end:]
        self._mode = "tail"

    def _tail(self, events: Events) -> None:
        at = self._buffer.find(TOOL_CALL_CLOSE)
        if at >= 0:
            self._buffer = self._buffer[at + len(TOOL_CALL_CLOSE) :]
            self._mode = "content"
