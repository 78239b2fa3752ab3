"""MCP tools: the two names of a tool, the config, results as text, and one server's
connection against the real test server (``tests/support/mcp_server.py``) over stdio
and streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import mcp_types
import msgspec
import pytest

from extensions.tools.base import ToolError
from extensions.tools.config import ToolsConfig
from extensions.tools.mcp.config import McpServerConfig
from extensions.tools.mcp.connection import McpConnection
from extensions.tools.mcp.names import (
    OPENAI_FUNCTION_NAME,
    config_name,
    split_config_name,
    wire_name,
)
from extensions.tools.mcp.provider import McpToolProvider
from extensions.tools.mcp.results import result_text
from proxy.errors import InvalidRequest, ServiceUnavailable
from tests.support.mcp_server import CALL_LOG, http_app
from tests.support.servers import free_port, serve_asgi

SCRIPT = str(Path(__file__).resolve().parents[1] / "support" / "mcp_server.py")


def server(name: str = "calc", **extra: Any) -> McpServerConfig:
    extra.setdefault("command", [sys.executable, SCRIPT])
    return msgspec.convert({"name": name, **extra}, McpServerConfig)


# ---------------------------------------------------------------------- names


def test_a_plain_name_is_offered_as_is() -> None:
    assert config_name("calc", "add") == "mcp:calc.add"
    assert wire_name("calc", "add") == "mcp__calc__add"
    assert wire_name("my-server_2", "get_thing-x") == "mcp__my-server_2__get_thing-x"


def test_names_openai_refuses_are_made_valid_and_stay_distinct() -> None:
    dotted = wire_name("fs", "files.read")
    slashed = wire_name("fs", "files/read")
    assert (
        dotted.startswith("mcp__fs__files_read_") and len(dotted) == len("mcp__fs__files_read_") + 8
    )
    assert slashed.startswith("mcp__fs__files_read_")
    assert dotted != slashed
    assert OPENAI_FUNCTION_NAME.fullmatch(dotted) and OPENAI_FUNCTION_NAME.fullmatch(slashed)
    assert wire_name("fs", "files.read") == dotted  # the same on every replica and restart


def test_a_long_name_is_cut_to_64_characters() -> None:
    long_tool = "x" * 100
    name = wire_name("a" * 32, long_tool)
    assert len(name) == 64
    assert OPENAI_FUNCTION_NAME.fullmatch(name)
    assert name != wire_name("a" * 32, long_tool + "y")


def test_config_names_split_at_the_first_dot() -> None:
    assert split_config_name("mcp:web.text.upper") == ("web", "text.upper")
    assert split_config_name("mcp:web.*") == ("web", "*")
    assert split_config_name("mcp:web") is None
    assert split_config_name("mcp:.add") is None
    assert split_config_name("web_fetch") is None


# --------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"name": "a.b", "command": "x"}, "no dots"),
        ({"name": "a__b", "command": "x"}, "no dots, no '__'"),
        ({"name": "_a", "command": "x"}, "single '_'"),
        ({"name": "a" * 33, "command": "x"}, "at most 32"),
        ({"name": "a", "command": "x", "url": "http://h/mcp"}, "exactly one of command and url"),
        ({"name": "a"}, "exactly one of command and url"),
        ({"name": "a", "command": []}, "command must not be empty"),
        ({"name": "a", "url": "ftp://h/mcp"}, "url must be an http(s) URL"),
        ({"name": "a", "url": "http://h/mcp", "args": ["-v"]}, "args and env go with command"),
        ({"name": "a", "command": "x", "allowed_tools": [""]}, "must not be empty"),
        ({"name": "a", "command": "x", "timeout_s": 0}, "Expected `float` > 0.0"),
        ({"name": "a", "command": "x", "headers": {}}, "unknown field `headers`"),
    ],
)
def test_bad_server_entries_are_refused(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert({"mcp": [entry]}, ToolsConfig)
    assert problem in str(refused.value)
    assert "$.mcp[0]" in str(refused.value)


def test_a_server_named_twice_is_refused() -> None:
    entries = [{"name": "a", "command": "x"}, {"name": "a", "url": "http://h/mcp"}]
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert({"mcp": entries}, ToolsConfig)
    assert "MCP server 'a' is configured twice" in str(refused.value)


def test_command_and_args_make_one_command_line() -> None:
    assert server(command="node", args=["srv.js"]).argv == ["node", "srv.js"]
    assert server(command=["uvx", "tool"], args=["--x"]).argv == ["uvx", "tool", "--x"]


# -------------------------------------------------------------------- results


def _result(**fields: Any) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult.model_validate(fields)


def test_text_blocks_are_the_result() -> None:
    result = _result(
        content=[{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        structuredContent={"ignored": True},
    )
    assert result_text(result, 100) == "one\n\ntwo"


def test_structured_content_is_used_when_no_block_has_text() -> None:
    result = _result(content=[], structuredContent={"sum": 5, "note": "é"})
    assert result_text(result, 100) == '{"sum": 5, "note": "é"}'


def test_an_is_error_result_is_error_text() -> None:
    result = _result(content=[{"type": "text", "text": "no such file"}], isError=True)
    assert result_text(result, 100) == "error: no such file"
    assert result_text(_result(content=[], isError=True), 100) == (
        "error: the tool reported an error without a message"
    )


def test_binary_blocks_are_named_and_resources_given() -> None:
    result = _result(
        content=[
            {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
            {"type": "resource_link", "uri": "file:///a.txt", "name": "a"},
            {"type": "resource", "resource": {"uri": "file:///b.txt", "text": "bee"}},
        ]
    )
    assert (
        result_text(result, 1000)
        == "[image: image/png, 5 bytes]\n\n[resource: file:///a.txt]\n\nbee"
    )


def test_a_long_result_is_cut_and_marked() -> None:
    result = _result(content=[{"type": "text", "text": "x" * 50}])
    assert result_text(result, 10) == "x" * 10 + "\n[cut: the result had 50 characters]"
    assert result_text(_result(content=[]), 10) == "(the tool returned nothing)"


# ------------------------------------------------------ connections (real servers)


def _text(result: mcp_types.CallToolResult) -> str:
    return result_text(result, 1000)


async def test_concurrent_requests_share_one_stdio_server() -> None:
    connection = McpConnection(server())
    try:
        listed, *pids = await asyncio.gather(
            connection.list_tools(), *(connection.call_tool("pid", {}) for _ in range(3))
        )
        assert [t.name for t in listed] == ["add", "text.upper", "hang", "fail", "pid"]
        assert len({_text(p) for p in pids}) == 1
        assert _text(await connection.call_tool("add", {"a": 2, "b": 3})) == "5"
    finally:
        await connection.aclose()
    with pytest.raises(ToolError, match="MCP server 'calc' is shutting down"):
        await connection.call_tool("add", {"a": 1, "b": 1})


async def test_env_reaches_the_stdio_server_and_the_gateways_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWITCHYARD_SECRET_FOR_TEST", "do-not-pass")
    leak = tmp_path / "leak"
    reader = (
        "import os, sys; open(sys.argv[1], 'w').write(os.environ.get("
        "'SWITCHYARD_SECRET_FOR_TEST', 'absent')); "
        f"sys.argv = [{SCRIPT!r}]; exec(open({SCRIPT!r}).read())"
    )
    connection = McpConnection(
        server(command=[sys.executable, "-c", reader, str(leak)], env={CALL_LOG: str(log)})
    )
    try:
        assert _text(await connection.call_tool("add", {"a": 2, "b": 3})) == "5"
    finally:
        await connection.aclose()
    assert log.read_text() == "2+3=5\n"
    assert leak.read_text() == "absent"


async def test_a_server_that_never_answers_the_handshake_times_out() -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    connection = McpConnection(server("mute", command=sleeper, start_timeout_s=0.5))
    try:
        with pytest.raises(ToolError) as failed:
            await connection.list_tools()
        assert str(failed.value) == "MCP server 'mute' did not start within 0.5s"
    finally:
        await connection.aclose()
    assert not connection._owners


async def test_a_server_that_exits_at_once_is_reported() -> None:
    quitter = [sys.executable, "-c", "pass"]
    connection = McpConnection(server("quits", command=quitter))
    try:
        with pytest.raises(ToolError) as failed:
            await connection.call_tool("add", {})
        assert str(failed.value) == "MCP server 'quits' could not be started: Connection closed"
    finally:
        await connection.aclose()


async def test_an_unknown_tool_is_the_servers_error_result() -> None:
    connection = McpConnection(server())
    try:
        result = await connection.call_tool("nope", {})
        assert _text(result) == "error: Unknown tool: nope"
    finally:
        await connection.aclose()


async def test_an_http_server_that_restarted_is_reconnected() -> None:
    port = free_port()
    connection = McpConnection(server("web", command=None, url=f"http://127.0.0.1:{port}/mcp"))
    try:
        with serve_asgi(http_app(), port=port):
            assert _text(await connection.call_tool("add", {"a": 1, "b": 2})) == "3"
        with pytest.raises(ToolError) as down:
            await connection.call_tool("add", {"a": 1, "b": 2})
        assert str(down.value).startswith("MCP server 'web' could not be reached: ")
        with serve_asgi(http_app(), port=port):
            assert _text(await connection.call_tool("add", {"a": 2, "b": 2})) == "4"
    finally:
        await connection.aclose()


# ------------------------------------------------------------------- provider


async def test_the_provider_resolves_names_patterns_and_allowed_tools() -> None:
    provider = McpToolProvider([server(allowed_tools=["add", "text.*"])])
    try:
        exact = await provider.resolve("mcp:calc.add")
        assert list(exact) == ["mcp:calc.add"]
        assert exact["mcp:calc.add"].definition()["function"]["name"] == "mcp__calc__add"
        every = await provider.resolve("mcp:calc.*")
        assert list(every) == ["mcp:calc.add", "mcp:calc.text.upper"]
        with pytest.raises(InvalidRequest) as hidden:
            await provider.resolve("mcp:calc.pid")
        assert hidden.value.message == (
            "Unknown tool 'mcp:calc.pid' (the MCP server 'calc' offers: mcp:calc.add, "
            "mcp:calc.text.upper)."
        )
        assert provider.known() == ["mcp:calc.*"]
    finally:
        await provider.aclose()


async def test_an_unreachable_server_offers_named_tools_and_refuses_patterns() -> None:
    provider = McpToolProvider([server("gone", command="/nonexistent/x", allowed_tools=["a*"])])
    try:
        offered = await provider.resolve("mcp:gone.add")
        tool = offered["mcp:gone.add"]
        definition = tool.definition()["function"]
        assert definition["parameters"] == {"type": "object"}
        assert definition["description"].startswith(
            "Tool 'add' of the MCP server 'gone', which could not be reached ("
        )
        with pytest.raises(InvalidRequest):
            await provider.resolve("mcp:gone.pid")  # not allowed, reachable or not
        with pytest.raises(ServiceUnavailable):
            await provider.resolve("mcp:gone.*")
    finally:
        await provider.aclose()


async def test_a_tools_list_changed_notification_drops_the_cached_listing() -> None:
    connection = McpConnection(server())
    try:
        first = await connection.list_tools()
        assert await connection.list_tools() is first  # cached
        await connection._on_message(mcp_types.ToolListChangedNotification())
        again = await connection.list_tools()
        assert again is not first
        assert [t.name for t in again] == [t.name for t in first]
    finally:
        await connection.aclose()


async def test_mcp_tools_make_a_local_tool_grammar_and_parse_back() -> None:
    """The local adapter takes MCP tools as they are offered: their wire names and
    ``inputSchema``s become its GBNF grammar, and a call written in its format parses
    back to the wire name the tool loop maps to the MCP tool."""
    import llama_cpp

    from adapters.llamacpp.tools import ToolCallParser, plan_output
    from proxy.schemas.chat import ChatCompletionRequest

    provider = McpToolProvider([server()])
    try:
        tools = {
            **await provider.resolve("mcp:calc.add"),
            **await provider.resolve("mcp:calc.text.upper"),
        }
    finally:
        await provider.aclose()
    definitions = [tool.definition() for tool in tools.values()]
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": definitions,
        "tool_choice": "required",
    }
    plan = plan_output(msgspec.convert(body, ChatCompletionRequest))
    upper = wire_name("calc", "text.upper")
    assert plan.grammar is not None and plan.system_text is not None
    assert '\\"mcp__calc__add\\"' in plan.grammar and f'\\"{upper}\\"' in plan.grammar
    assert "mcp__calc__add" in plan.system_text and upper in plan.system_text
    llama_cpp.LlamaGrammar.from_string(plan.grammar, verbose=False)
    parser = ToolCallParser()
    parser.feed(
        '<tool_call>\n[{"name": "mcp__calc__add", "arguments": {"a": 2, "b": 3}}]\n</tool_call>'
    )
    parser.finish()
    assert [(c.name, json.loads(c.arguments)) for c in parser.calls] == [
        ("mcp__calc__add", {"a": 2, "b": 3})
    ]
