"""Constrained output: grammars for tool calls and ``response_format``.

Tool calls are made reliable by a GBNF grammar built from the tools' JSON schemas
(``json_grammar``, whose strings are valid JSON strings): the calls are one
``<tool_call>`` block holding a JSON list of ``{"name": <one of the tools>,
"arguments": <that tool's schema>}``. The model ends the list itself (``]``), and after
the block only the end of the turn is allowed, so it cannot go on calling forever;
with ``parallel_tool_calls: false`` the list holds exactly one call.

- ``required`` or a named tool: the grammar applies from the first token.
- ``auto``: the model writes freely; the grammar takes over if it opens a
  ``<tool_call>`` (a lazy grammar), or, with a JSON ``response_format`` too, the
  output is either tool calls or the JSON.
- ``none``: tools are not offered and nothing is parsed.

``ToolCallParser`` (``tool_parser``) turns the text back into content and tool calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from adapters.llamacpp.json_grammar import JsonSchemaGrammar
from adapters.llamacpp.prompts import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, tools_system_text
from adapters.llamacpp.tool_parser import Events, ToolCallParser, ToolCallState
from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET
from proxy.schemas.chat import ChatCompletionRequest, ResponseFormat

__all__ = ["Events", "OutputPlan", "ToolCallParser", "ToolCallState", "plan_output"]

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(slots=True)
class OutputPlan:
    grammar: str | None = None
    trigger: str | None = None
    parse_tools: bool = False
    system_text: str | None = None


def _converter() -> JsonSchemaGrammar:
    return JsonSchemaGrammar(prop_order={"name": 0, "arguments": 1})


def _convert(converter: JsonSchemaGrammar, schema: Any, rule: str, param: str) -> str:
    if not isinstance(schema, dict):
        raise InvalidRequest("A JSON schema must be an object.", param=param)
    try:
        return converter.convert(schema, rule)
    except Exception as exc:
        raise InvalidRequest(f"Unsupported JSON schema: {shown(exc)}", param=param) from None


def schema_grammar(schema: dict[str, Any], param: str) -> str:
    converter = _converter()
    _convert(converter, schema, "root", param)
    return converter.format_grammar()


def _response_schema(fmt: ResponseFormat) -> dict[str, Any]:
    """The schema a ``json_schema`` format names (any object when it names none)."""
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
        schema = _response_schema(fmt) if fmt.type == "json_schema" else _ANY_OBJECT
        json_rule = _convert(converter, schema, "answer", "response_format.json_schema")
    if choice == "none" or choice is None:
        if json_rule is None:
            return OutputPlan()
        converter.add_wrapper_rule("root", json_rule)
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
    converter.add_wrapper_rule("call", " | ".join(alternatives))
    parallel = params.parallel_tool_calls is not False
    calls = 'call ("," space call)*' if parallel else "call"
    converter.add_wrapper_rule(
        "tool-calls", f'"{TOOL_CALL_OPEN}\\n[" {calls} "]\\n{TOOL_CALL_CLOSE}"'
    )
    plan = OutputPlan(parse_tools=True, system_text=tools_system_text(functions, parallel=parallel))
    if choice == "auto" and json_rule is None:
        converter.add_wrapper_rule("root", "tool-calls")
        plan.trigger = re.escape(TOOL_CALL_OPEN)
    elif choice == "auto":
        converter.add_wrapper_rule("root", f"tool-calls | {json_rule}")
    else:
        converter.add_wrapper_rule("root", "tool-calls")
    plan.grammar = converter.format_grammar()
    return plan
