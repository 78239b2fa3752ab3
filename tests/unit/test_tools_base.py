"""Loading the tools by entry point, and running a tool call as the model sends it."""

from __future__ import annotations

import httpx
import pytest

from extensions.tools import ToolContext, call_tool, load_tools, parse_arguments, registered_tools
from extensions.tools.base import ToolError
from extensions.tools.config import ToolsConfig, WebFetchConfig
from extensions.tools.rag_search import RagSearchTool
from extensions.tools.web_fetch import WebFetchTool
from proxy.settings import settings_from_mapping


def test_tools_are_registered_and_loaded_by_name() -> None:
    assert {"web_fetch", "web_search", "rag_search"} <= set(registered_tools())
    tools = load_tools(ToolsConfig(web_fetch=WebFetchConfig(max_chars=99)))
    assert set(tools) == {"web_fetch", "rag_search"}  # web_search: not configured
    assert (
        isinstance(tools["web_fetch"], WebFetchTool) and tools["web_fetch"].config.max_chars == 99
    )
    assert isinstance(tools["rag_search"], RagSearchTool)
    for name, tool in tools.items():
        definition = tool.definition()
        assert definition["type"] == "function" and definition["function"]["name"] == name
        assert definition["function"]["parameters"]["type"] == "object"


def test_tools_config_from_yaml_mapping() -> None:
    settings = settings_from_mapping(
        {
            "tools": {
                "max_rounds": 3,
                "web_fetch": {"allowed_hosts": ["10.0.0.0/8", "wiki.internal"]},
                "web_search": {"provider": "searxng", "url": "http://searx:8080"},
            }
        }
    )
    tools = settings.section("tools", ToolsConfig)
    assert tools.max_rounds == 3
    assert tools.web_fetch.allowed_hosts == ["10.0.0.0/8", "wiki.internal"]
    assert set(load_tools(tools)) == {"web_fetch", "web_search", "rag_search"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, {}), ("", {}), ("  ", {}), ('{"url": "x"}', {"url": "x"}), ({"a": 1}, {"a": 1})],
)
def test_parse_arguments(raw: object, expected: dict) -> None:
    assert parse_arguments(raw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "invalid arguments: not valid JSON"),
        ("[1, 2]", "invalid arguments: expected a JSON object, got an array"),
        ('"http://x"', "invalid arguments: expected a JSON object, got a string"),
    ],
)
def test_parse_arguments_refuses_non_objects(raw: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        parse_arguments(raw)


async def test_call_tool_never_raises_for_bad_calls() -> None:
    tools = load_tools(ToolsConfig())
    async with httpx.AsyncClient() as http:
        context = ToolContext(http=http, config=ToolsConfig())
        assert await call_tool(tools, "shell", "{}", context) == (
            "error: unknown tool 'shell' (available: rag_search, web_fetch)"
        )
        assert (await call_tool(tools, "web_fetch", "{oops", context)).startswith(
            "error: invalid arguments: not valid JSON"
        )
        assert await call_tool(tools, "web_fetch", '{"url": "http://10.0.0.1/"}', context) == (
            "error: refused: 10.0.0.1 is a private address"
        )
        assert await call_tool(tools, "rag_search", '{"query": "q"}', context) == (
            "error: RAG is not configured on this gateway"
        )
