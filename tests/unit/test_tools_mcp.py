"""MCP tools: the two names of a tool, the config, results as text, and one server's
connection against the real test server (``tests/support/mcp_server.py``) over stdio
and streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import msgspec
import pytest

from extensions.tools.base import ToolError
from extensions.tools.config import ToolsConfig
from extensions.tools.mcp.config import McpServerConfig
from extensions.tools.mcp.connection import McpConnection, _Live
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
        ({"name": "a", "command": "x", "start_backoff_s": -1}, "Expected `float` >= 0.0"),
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
    clock = FakeClock()
    config = server("web", command=None, url=f"http://127.0.0.1:{port}/mcp")
    connection = McpConnection(config, clock=clock)
    try:
        with serve_asgi(http_app(), port=port):
            assert _text(await connection.call_tool("add", {"a": 1, "b": 2})) == "3"
        with pytest.raises(ToolError) as down:
            await connection.call_tool("add", {"a": 1, "b": 2})
        assert str(down.value).startswith("MCP server 'web' could not be reached: ")
        with serve_asgi(http_app(), port=port):
            with pytest.raises(ToolError) as remembered:  # within the back-off: not tried
                await connection.call_tool("add", {"a": 2, "b": 2})
            assert str(remembered.value) == str(down.value)
            clock.now += config.start_backoff_s
            assert _text(await connection.call_tool("add", {"a": 2, "b": 2})) == "4"
    finally:
        await connection.aclose()


# ------------------------------------- one start attempt at a time, then a back-off


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeClient:
    """What ``McpConnection`` uses of the SDK's ``Client``: one page of tools."""

    def __init__(self, tools: list[str]) -> None:
        self.tools = [mcp_types.Tool(name=name, input_schema={"type": "object"}) for name in tools]

    async def list_tools(self, cursor: str | None = None) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(tools=self.tools)


class FakeStarts:
    """Stands in for ``McpConnection._connect``: counts its calls; each one waits for
    ``release`` (set: no wait), then fails with ``error`` or connects."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.error: str | None = "MCP server 'mute' did not start within 30s"
        self.holders: list[asyncio.Task[None]] = []

    async def __call__(self) -> _Live:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise ToolError(self.error)
        holder = asyncio.get_running_loop().create_task(asyncio.Event().wait())
        self.holders.append(holder)
        return _Live(FakeClient(["echo"]), holder, anyio.CancelScope())  # type: ignore[arg-type]

    def close(self) -> None:
        for holder in self.holders:
            holder.cancel()


def fake_connection(
    monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> tuple[McpConnection, FakeStarts, FakeClock]:
    clock = FakeClock()
    connection = McpConnection(server("mute", **extra), clock=clock)
    starts = FakeStarts()
    monkeypatch.setattr(connection, "_connect", starts)
    return connection, starts, clock


async def _all_waiting(connection: McpConnection, starts: FakeStarts, count: int) -> None:
    """Until the attempt has started: the first request made it, after every request
    already scheduled had run to its wait (nothing yields between counting one in
    flight and that wait)."""
    await starts.started.wait()
    assert connection.in_flight == count


async def test_concurrent_requests_on_a_hanging_start_share_one_attempt_and_its_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection, starts, _ = fake_connection(monkeypatch)
    waiters = [asyncio.ensure_future(connection.list_tools()) for _ in range(10)]
    await _all_waiting(connection, starts, 10)
    assert starts.calls == 1
    assert not any(w.done() for w in waiters)  # all wait on the one attempt, none failed
    starts.release.set()
    failures = await asyncio.gather(*waiters, return_exceptions=True)
    assert starts.calls == 1
    assert [type(f) for f in failures] == [ToolError] * 10
    assert {str(f) for f in failures} == {"MCP server 'mute' did not start within 30s"}
    assert len({id(f) for f in failures}) == 10  # each its own error
    await connection.aclose()


async def test_a_request_that_goes_away_leaves_the_attempt_to_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection, starts, _ = fake_connection(monkeypatch)
    starts.error = None
    first = asyncio.ensure_future(connection.list_tools())
    second = asyncio.ensure_future(connection.list_tools())
    await _all_waiting(connection, starts, 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    starts.release.set()
    assert [t.name for t in await second] == ["echo"]
    assert starts.calls == 1
    await connection.aclose()
    starts.close()


async def test_a_failed_start_is_remembered_for_the_back_off_then_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection, starts, clock = fake_connection(monkeypatch, start_backoff_s=5)
    starts.release.set()
    with pytest.raises(ToolError):
        await connection.list_tools()
    assert starts.calls == 1
    clock.now += 4.9
    for request in (connection.list_tools(), connection.call_tool("echo", {})):
        with pytest.raises(ToolError) as remembered:
            await request
        assert str(remembered.value) == "MCP server 'mute' did not start within 30s"
    assert starts.calls == 1  # within the back-off: failed at once, no new attempt
    clock.now += 0.1
    starts.error = "MCP server 'mute' could not be started: Connection closed"
    with pytest.raises(ToolError) as again:
        await connection.list_tools()
    assert str(again.value) == "MCP server 'mute' could not be started: Connection closed"
    assert starts.calls == 2  # after it: one new attempt, whose failure now stands
    clock.now += 4.9
    with pytest.raises(ToolError) as remembered_again:
        await connection.list_tools()
    assert str(remembered_again.value) == str(again.value)
    assert starts.calls == 2
    await connection.aclose()


async def test_a_start_that_succeeds_after_a_failure_is_used_by_later_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection, starts, clock = fake_connection(monkeypatch)
    starts.release.set()
    with pytest.raises(ToolError):
        await connection.list_tools()
    clock.now += connection.config.start_backoff_s
    starts.error = None
    listed = await connection.list_tools()
    assert [t.name for t in listed] == ["echo"]
    assert starts.calls == 2
    starts.error = "must not be tried"
    clock.now += 1000
    assert await connection.list_tools() is listed  # the same connection and listing
    live = connection._live
    assert live is not None and live.alive
    assert starts.calls == 2
    await connection.aclose()
    starts.close()


async def test_a_connection_that_ended_is_made_again_without_a_back_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash is not a failed start: the next request reconnects at once."""
    connection, starts, _ = fake_connection(monkeypatch)
    starts.error = None
    starts.release.set()
    await connection.list_tools()
    starts.holders[0].cancel()  # the connection's task ended (the server died)
    await asyncio.sleep(0)
    assert [t.name for t in await connection.list_tools()] == ["echo"]
    assert starts.calls == 2
    await connection.aclose()
    starts.close()


async def test_a_zero_back_off_tries_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    connection, starts, _ = fake_connection(monkeypatch, start_backoff_s=0)
    starts.release.set()
    for _ in range(3):
        with pytest.raises(ToolError):
            await connection.list_tools()
    assert starts.calls == 3
    await connection.aclose()


async def test_closing_fails_the_requests_waiting_on_an_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection, starts, _ = fake_connection(monkeypatch)
    waiters = [asyncio.ensure_future(connection.list_tools()) for _ in range(3)]
    await _all_waiting(connection, starts, 3)
    await connection.aclose()
    failures = await asyncio.gather(*waiters, return_exceptions=True)
    assert [str(f) for f in failures] == ["MCP server 'mute' is shutting down"] * 3
    assert [type(f) for f in failures] == [ToolError] * 3


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
