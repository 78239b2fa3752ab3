"""Sessions, RAG and server-side tools (an MCP server's) work the same in every dialect.

One gateway on the protocol-faithful fake OpenAI upstream, reached through each official
client: ``openai`` (Chat Completions and the Responses API), ``anthropic`` (Messages)
and ``ollama``. Each extension is switched on a different way (the header, the
``switchyard`` body field, the model-name suffix), and each test checks what reached the
model (the fake's recorded requests) and what the client got back. Personas are
covered per dialect in each dialect's own module.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import RunningServer, serve_gateway

KEY = "sk-dialect-extensions"
SCRIPT = str(Path(__file__).resolve().parents[1] / "support" / "mcp_server.py")
FACT = "Lighthouse keepers on Skerry Point log the weather at dawn."
DIALECTS = ["chat", "responses", "messages", "ollama"]

Send = Callable[[RunningServer, str, str, dict[str, str], dict[str, Any]], str]
"""(gateway, model, text, headers, switchyard body field) -> the answer's text."""


def _chat(server: RunningServer, model: str, text: str, headers: Any, field: Any) -> str:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0) as client:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": text}],
            extra_headers=headers,
            extra_body={"switchyard": field} if field else None,
        )
    return reply.choices[0].message.content or ""


def _responses(server: RunningServer, model: str, text: str, headers: Any, field: Any) -> str:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0) as client:
        reply = client.responses.create(
            model=model,
            input=text,
            extra_headers=headers,
            extra_body={"switchyard": field} if field else None,
        )
    return reply.output_text


def _messages(server: RunningServer, model: str, text: str, headers: Any, field: Any) -> str:
    with anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0) as client:
        reply = client.messages.create(
            model=model,
            max_tokens=200,
            messages=[{"role": "user", "content": text}],
            extra_headers=headers,
            extra_body={"switchyard": field} if field else None,
        )
    return "".join(b.text for b in reply.content if b.type == "text")


def _ollama(server: RunningServer, model: str, text: str, headers: Any, field: Any) -> str:
    client = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {KEY}", **headers})
    if field:  # the ollama package has no extra-body option: the raw API takes the field
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        reply = httpx.post(
            f"{server.url}/api/chat",
            json={**body, "stream": False, "switchyard": field},
            headers={"Authorization": f"Bearer {KEY}", **headers},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["message"]["content"])
    return (
        client.chat(model=model, messages=[{"role": "user", "content": text}]).message.content or ""
    )


SENDERS: dict[str, Send] = {
    "chat": _chat,
    "responses": _responses,
    "messages": _messages,
    "ollama": _ollama,
}


@pytest.fixture(scope="module")
def gateway(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("dialect-extensions")
    config: dict[str, Any] = {
        "server": {"api_keys": [KEY], "data_dir": str(data)},
        "defaults": False,
        "models": [
            model_entry("gpt-test", "upstream-gpt", fake_url),
            model_entry("embedder", "upstream-embed", fake_url),
        ],
        "rag": {"embedding_model": "embedder", "top_k": 2},
        "tools": {"mcp": [{"name": "calc", "command": [sys.executable, SCRIPT], "timeout_s": 20}]},
    }
    with serve_gateway(config) as running:
        rag = httpx.Client(
            base_url=f"{running.url}/v1/switchyard/rag",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        with rag:
            assert rag.post("/collections", json={"name": "harbour"}).status_code == 201
            added = rag.post(
                "/collections/harbour/documents",
                json={"documents": [{"id": "skerry", "text": FACT, "source": "skerry.md"}]},
            )
            assert added.status_code in (200, 201), added.text
        yield running


def chat_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.received("/v1/chat/completions")]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_session_keeps_the_history_in_every_dialect(
    gateway: RunningServer, fake: FakeOpenAI, dialect: str
) -> None:
    send, session = SENDERS[dialect], {"X-Switchyard-Session": f"voyage-{dialect}"}
    first = send(gateway, "gpt-test", "My ship is called Petrel.", session, {})
    send(gateway, "gpt-test", "What is my ship called?", session, {})
    *_, second = chat_requests(fake)
    messages = [(m["role"], m["content"]) for m in second["messages"]]
    assert messages == [
        ("user", "My ship is called Petrel."),
        ("assistant", first),
        ("user", "What is my ship called?"),
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_rag_puts_the_collections_text_before_the_model_in_every_dialect(
    gateway: RunningServer, fake: FakeOpenAI, dialect: str
) -> None:
    SENDERS[dialect](gateway, "gpt-test", "When is the weather logged?", {}, {"rag": ["harbour"]})
    (request,) = chat_requests(fake)
    assert FACT in json.dumps(request["messages"])
    assert request["messages"][-1] == {"role": "user", "content": "When is the weather logged?"}
    assert "switchyard" not in request


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_mcp_tool_runs_in_the_tool_loop_in_every_dialect(
    gateway: RunningServer, fake: FakeOpenAI, dialect: str
) -> None:
    answer = SENDERS[dialect](gateway, "gpt-test+tools:mcp:calc.add", "Add a=2 b=3.", {}, {})
    assert answer == "The tool said: 5"
    offered, answered = chat_requests(fake)
    assert [t["function"]["name"] for t in offered["tools"]] == ["mcp__calc__add"]
    tool_message = answered["messages"][-1]
    assert (tool_message["role"], tool_message["content"]) == ("tool", "5")
