"""MCP servers' tools in the tool loop, against real MCP servers written with the SDK
(``tests/support/mcp_server.py``): one run over stdio as the gateway's subprocess, one
served over streamable HTTP. The protocol-faithful fake OpenAI upstream plays the
model (it checks function names as OpenAI does, and takes ``a=2 b=3`` from the user's
message as arguments); ``test_mcp_tools_local.py`` does the same with SmolLM2.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from extensions.tools.mcp.names import wire_name
from proxy.settings import load_settings
from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI, wait_until
from tests.support.mcp_server import http_app
from tests.support.servers import RunningServer, serve_asgi, serve_gateway
from tests.support.tenants import seed_keys

SCRIPT = str(Path(__file__).resolve().parents[1] / "support" / "mcp_server.py")
MASTER = "sk-mcp-tests-master"
TOOLS_KEY = "sk-mcp-tests-tools"
NO_TOOLS_KEY = "sk-mcp-tests-no-tools"
MISSING = "/nonexistent/mcp-server"
UPPER_WIRE = wire_name("web", "text.upper")
#: A server that starts (and says so, a line per start) but never answers the handshake.
MUTE = "import sys, time; open(sys.argv[1], 'a').write('start\\n'); time.sleep(600)"
MUTE_START_S = 3


def stdio(name: str, pid_file: Path | None = None, **extra: Any) -> dict[str, Any]:
    args = ["--pid-file", str(pid_file)] if pid_file else []
    return {"name": name, "command": [sys.executable, SCRIPT], "args": args, **extra}


@pytest.fixture(scope="module")
def pid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-pid") / "calc.pid"


@pytest.fixture(scope="module")
def mute_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-mute") / "starts.log"


@pytest.fixture(scope="module")
def mcp_http() -> Iterator[RunningServer]:
    with serve_asgi(http_app()) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    fake_url: str,
    mcp_http: RunningServer,
    pid_file: Path,
    mute_log: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("mcp-data")
    seed_keys(
        data,
        {TOOLS_KEY: "team_tools", NO_TOOLS_KEY: "team_plain"},
        teams={"team_plain": {"allowed_extensions": ["session"]}},
    )
    config: dict[str, Any] = {
        "server": {"master_key": MASTER, "data_dir": str(data)},
        "defaults": False,
        "models": [model_entry("gpt-test", "upstream-gpt", fake_url)],
        "tools": {
            "mcp": [
                stdio("calc", pid_file, timeout_s=20),
                {
                    "name": "web",
                    "url": f"{mcp_http.url}/mcp",
                    "allowed_tools": ["add", "text.*"],
                    "timeout_s": 20,
                },
                stdio("slow", timeout_s=1, allowed_tools=["hang"]),
                {"name": "broken", "command": MISSING, "timeout_s": 5},
                {
                    "name": "mute",
                    "command": [sys.executable, "-c", MUTE, str(mute_log)],
                    "start_timeout_s": MUTE_START_S,
                    "start_backoff_s": 600,  # the whole module: it is started once
                },
            ]
        },
    }
    with serve_gateway(config) as running:
        yield running


def client_for(server: RunningServer, key: str = TOOLS_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


def ask(server: RunningServer, text: str, tools: list[str], **kw: Any) -> Any:
    return client_for(server, kw.pop("key", TOOLS_KEY)).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": text}],
        extra_body={"switchyard": {"tools": tools}},
        **kw,
    )


def chat_bodies(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.received("/v1/chat/completions")]


# ------------------------------------------------------------------ the result


def test_a_stdio_tool_computes_the_answer(gateway: RunningServer, fake: FakeOpenAI) -> None:
    reply = ask(gateway, "Add a=2 b=3 please.", ["mcp:calc.add"])
    assert reply.choices[0].message.content == "The tool said: 5"
    assert reply.choices[0].finish_reason == "stop"
    first, second = chat_bodies(fake)
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "mcp__calc__add",
                "description": "Add two integers and return the sum.",
                "parameters": {
                    "properties": {
                        "a": {"title": "A", "type": "integer"},
                        "b": {"title": "B", "type": "integer"},
                    },
                    "required": ["a", "b"],
                    "title": "addArguments",
                    "type": "object",
                },
            },
        }
    ]
    call = second["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "mcp__calc__add", "arguments": '{"a": 2, "b": 3}'}
    assert second["messages"][2] == {"role": "tool", "tool_call_id": call["id"], "content": "5"}


def test_an_http_tool_computes_the_answer_streamed(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    chunks = list(
        client_for(gateway).chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "Add a=40 b=2."}],
            stream=True,
            extra_headers={"X-Switchyard-Tools": "mcp:web.add"},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The tool said: 42"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chat_bodies(fake)[0]["tools"][0]["function"]["name"] == "mcp__web__add"


def test_a_model_name_suffix_activates_an_mcp_tool(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    reply = client_for(gateway).chat.completions.create(
        model="gpt-test+tools:mcp:calc.add",
        messages=[{"role": "user", "content": "Add a=9 b=10"}],
    )
    assert reply.choices[0].message.content == "The tool said: 19"
    assert chat_bodies(fake)[0]["model"] == "upstream-gpt"


def test_a_dotted_mcp_name_goes_to_the_model_as_a_valid_function_name(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    """``text.upper`` cannot be an OpenAI function name (the fake refuses it as the API
    does); it is offered under its wire name and mapped back when called."""
    reply = ask(gateway, "Shout text=hello", ["mcp:web.text.upper"])
    assert reply.choices[0].message.content == "The tool said: HELLO"
    offered = chat_bodies(fake)[0]["tools"][0]["function"]["name"]
    digest = hashlib.sha256(b"mcp:web.text.upper").hexdigest()[:8]
    assert offered == UPPER_WIRE == f"mcp__web__text_upper_{digest}"


def test_the_fake_upstream_refuses_the_config_name_as_openai_does(fake_url: str) -> None:
    """What would happen unmapped: OpenAI's 400 for a function name with ``:`` or ``.``."""
    direct = openai.OpenAI(base_url=fake_url, api_key="sk-x", max_retries=0)
    tool = {"type": "function", "function": {"name": "mcp:calc.add", "parameters": {}}}
    with pytest.raises(openai.BadRequestError) as refused:
        direct.chat.completions.create(
            model="upstream-gpt", messages=[{"role": "user", "content": "hi"}], tools=[tool]
        )
    assert refused.value.body == {
        "message": "Invalid 'tools[0].function.name': string does not match pattern. "
        "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
        "type": "invalid_request_error",
        "param": "tools[0].function.name",
        "code": "invalid_value",
    }


def test_a_pattern_offers_the_allowed_tools_only(gateway: RunningServer, fake: FakeOpenAI) -> None:
    ask(gateway, "Add a=1 b=1", ["mcp:web.*"], parallel_tool_calls=False)
    names = [t["function"]["name"] for t in chat_bodies(fake)[0]["tools"]]
    assert names == ["mcp__web__add", UPPER_WIRE]  # hang, fail and pid are not allowed


def test_a_tool_choice_may_name_the_tool_by_its_config_name(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    reply = ask(
        gateway,
        "Add a=7 b=8",
        ["mcp:calc.add"],
        tool_choice={"type": "function", "function": {"name": "mcp:calc.add"}},
    )
    assert reply.choices[0].message.content == "The tool said: 15"
    first, second = chat_bodies(fake)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "mcp__calc__add"}}
    assert second["tool_choice"] == "auto"


def test_an_is_error_result_reaches_the_model_as_an_error(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    reply = ask(gateway, "Try it.", ["mcp:calc.fail"])
    assert reply.choices[0].message.content == "The tool said: error: Error executing tool fail"


# -------------------------------------------------------- names and permissions


def test_allowed_tools_hides_a_tool(gateway: RunningServer, fake: FakeOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        ask(gateway, "Hi", ["mcp:web.pid"])
    assert refused.value.body["message"] == (
        "Unknown tool 'mcp:web.pid' (the MCP server 'web' offers: mcp:web.add, mcp:web.text.upper)."
    )
    assert refused.value.body["param"] == "tools"
    assert chat_bodies(fake) == []


def test_an_unknown_server_is_a_400(gateway: RunningServer, fake: FakeOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        ask(gateway, "Hi", ["mcp:nowhere.add"])
    assert refused.value.body["message"] == (
        "Unknown tool 'mcp:nowhere.add': MCP tools are named mcp:<server>.<tool> "
        "(servers: broken, calc, mute, slow, web)."
    )
    assert chat_bodies(fake) == []


def test_a_team_without_tools_is_refused_as_for_any_tool(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    refusals = []
    for tools in (["mcp:calc.add"], ["web_fetch"]):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask(gateway, "Add a=2 b=3", tools, key=NO_TOOLS_KEY)
        refusals.append((refused.value.body["message"], refused.value.body["param"]))
    assert (
        refusals
        == [("The extension 'tools' is not allowed for team team_plain.", "switchyard")] * 2
    )
    assert chat_bodies(fake) == []


# ------------------------------------------------------------------ failures


def test_a_killed_stdio_server_is_restarted_by_the_next_request(
    gateway: RunningServer, fake: FakeOpenAI, pid_file: Path
) -> None:
    first = ask(gateway, "Which process?", ["mcp:calc.pid"]).choices[0].message.content
    pid = int(first.removeprefix("The tool said: "))
    assert pid == int(pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not _running(pid), timeout=10)
    second = ask(gateway, "Which process now?", ["mcp:calc.pid"]).choices[0].message.content
    new_pid = int(second.removeprefix("The tool said: "))
    assert new_pid != pid
    assert new_pid == int(pid_file.read_text())


def test_a_hanging_tool_gives_the_model_a_timeout_error(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    reply = ask(gateway, "Wait for it.", ["mcp:slow.hang"])
    assert reply.choices[0].message.content == (
        "The tool said: error: MCP server 'slow' did not answer within 1s (calling 'hang')"
    )


def test_a_server_that_cannot_start_gives_the_model_a_tool_error(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    reply = ask(gateway, "Add a=2 b=3", ["mcp:broken.add"])
    assert reply.choices[0].message.content == (
        "The tool said: error: MCP server 'broken' could not be started: FileNotFoundError: "
        f"[Errno 2] No such file or directory: '{MISSING}'"
    )
    offered = chat_bodies(fake)[0]["tools"][0]["function"]
    assert offered["name"] == "mcp__broken__add"
    assert offered["parameters"] == {"type": "object"}


def test_a_pattern_on_a_server_that_cannot_start_is_a_503(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    with pytest.raises(openai.InternalServerError) as refused:
        ask(gateway, "Hi", ["mcp:broken.*"])
    assert refused.value.status_code == 503
    assert refused.value.body["message"].startswith(
        "The MCP server 'broken' is unavailable, so 'mcp:broken.*' cannot be expanded: "
    )
    assert chat_bodies(fake) == []


def test_concurrent_requests_on_a_server_that_never_handshakes_start_it_once(
    gateway: RunningServer, fake: FakeOpenAI, mute_log: Path
) -> None:
    """They share the one start attempt and its failure (none waits for another one
    after it), and the tool calls that follow get the remembered failure at once: every
    request completes with the tool error, and the server was started once."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: ask(gateway, "Echo it.", ["mcp:mute.echo"]), range(6)))
    error = f"error: MCP server 'mute' did not start within {MUTE_START_S}s"
    assert [r.choices[0].message.content for r in replies] == [f"The tool said: {error}"] * 6
    assert [r.choices[0].finish_reason for r in replies] == ["stop"] * 6
    assert mute_log.read_text() == "start\n"
    bodies = chat_bodies(fake)
    assert len(bodies) == 12
    assert sorted(b["tools"][0]["function"]["name"] for b in bodies) == ["mcp__mute__echo"] * 12


def test_shutdown_ends_the_stdio_server(fake_url: str, tmp_path: Path) -> None:
    pid_path = tmp_path / "own.pid"
    config = {
        "server": {"api_keys": [TOOLS_KEY]},
        "models": [model_entry("gpt-test", "upstream-gpt", fake_url)],
        "tools": {"mcp": [stdio("own", pid_path)]},
    }
    with serve_gateway(config) as running:
        reply = ask(running, "Add a=20 b=22", ["mcp:own.add"])
        assert reply.choices[0].message.content == "The tool said: 42"
        pid = int(pid_path.read_text())
        assert _running(pid)
    assert not _running(pid)


def test_a_reload_keeps_the_servers_unless_tools_changed(fake_url: str, tmp_path: Path) -> None:
    """Unchanged ``tools:``: the same stdio server serves on. Changed: the old one is
    ended once no call is in flight, and the next request starts the new one."""
    path = tmp_path / "switchyard.yaml"

    def write(timeout_s: float) -> None:
        config = {
            "server": {"master_key": MASTER, "api_keys": [TOOLS_KEY], "data_dir": str(tmp_path)},
            "defaults": False,
            "models": [model_entry("gpt-test", "upstream-gpt", fake_url)],
            "tools": {"mcp": [stdio("own", timeout_s=timeout_s)]},
        }
        path.write_text(json.dumps(config), "utf-8")

    def served_by(server: RunningServer) -> int:
        said = ask(server, "Which process?", ["mcp:own.pid"]).choices[0].message.content
        return int(said.removeprefix("The tool said: "))

    def reload(server: RunningServer) -> None:
        answer = httpx.post(
            f"{server.url}/v1/switchyard/admin/reload",
            headers={"Authorization": f"Bearer {MASTER}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text

    write(20)
    with serve_gateway(load_settings(path)) as server:
        first = served_by(server)
        reload(server)
        assert served_by(server) == first
        write(25)
        reload(server)
        assert wait_until(lambda: not _running(first), timeout=15)
        second = served_by(server)
        assert second != first and _running(second)
    assert not _running(second)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, exited but not reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_the_sdk_sees_the_mapped_calls_nowhere(gateway: RunningServer, fake: FakeOpenAI) -> None:
    """The client gets the answer only: the server tool's call and result stay inside."""
    reply = ask(gateway, "Add a=2 b=3", ["mcp:calc.add"])
    assert reply.choices[0].message.tool_calls is None
    assert json.loads(reply.model_dump_json())["choices"][0]["message"]["content"] == (
        "The tool said: 5"
    )
