"""Legacy completions, embeddings and the model list through the gateway."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.e2e.conftest import AUTH, UPSTREAM_IDS, async_sdk, model_entry, sdk
from tests.support.fake_openai import FakeOpenAI, embedding_vector
from tests.support.servers import RunningServer


def test_completion_with_suffix(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    completion = client.completions.create(
        model="gpt-test",
        prompt="def add(a, b):\n",
        suffix="\n\nprint(add(1, 2))",
        max_tokens=16,
        temperature=0,
        stop=["\ndef"],
    )

    assert completion.object == "text_completion"
    assert completion.choices[0].text == " and so on [until \n\nprint(add(1, 2))]"
    assert completion.choices[0].finish_reason == "stop"
    sent = fake.last("/v1/completions").body
    assert sent == {
        "model": "upstream-gpt",
        "prompt": "def add(a, b):\n",
        "suffix": "\n\nprint(add(1, 2))",
        "max_tokens": 16,
        "temperature": 0,
        "stop": ["\ndef"],
    }


def test_completion_echo_and_unknown_fields(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    completion = client.completions.create(
        model="gpt-test", prompt="Once upon", echo=True, extra_body={"min_p": 0.05}
    )

    assert completion.choices[0].text == "Once upon and so on"
    assert fake.last("/v1/completions").body["min_p"] == 0.05


def test_completion_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="gpt-test",
            prompt="fn main() {",
            suffix="}",
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == " and so on [until }]"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split(" "))


async def test_async_completion_stream(gateway: RunningServer, fake: FakeOpenAI) -> None:
    async with async_sdk(gateway) as client:
        stream = await client.completions.create(model="gpt-test", prompt="x", stream=True)
        texts = [c.choices[0].text async for c in stream if c.choices]
    assert "".join(texts) == " and so on"
    assert len(texts) > 2


def test_embeddings_float_with_dimensions(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    result = client.embeddings.create(
        model="embed-test", input=["first text", "second"], dimensions=5, encoding_format="float"
    )

    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == embedding_vector("first text", 5)
    assert result.data[1].embedding == embedding_vector("second", 5)
    assert result.usage.prompt_tokens == 3
    sent = fake.last("/v1/embeddings").body
    assert sent == {
        "model": "upstream-embed",
        "input": ["first text", "second"],
        "dimensions": 5,
        "encoding_format": "float",
    }


def test_embeddings_base64_is_decoded_by_the_sdk(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    # The SDK asks for base64 by default and decodes it into floats itself.
    result = client.embeddings.create(model="embed-test", input="hello world")

    assert fake.last("/v1/embeddings").body["encoding_format"] == "base64"
    assert result.data[0].embedding == embedding_vector("hello world", 8)


def test_embeddings_base64_on_the_wire(raw: httpx.Client, fake: FakeOpenAI) -> None:
    response = raw.post(
        "/v1/embeddings",
        headers=AUTH,
        json={"model": "embed-test", "input": "hi", "encoding_format": "base64", "dimensions": 3},
    )

    assert response.status_code == 200
    encoded = response.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = list(struct.unpack("<3f", base64.b64decode(encoded)))
    assert decoded == embedding_vector("hi", 3)


def test_embeddings_token_arrays(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    result = client.embeddings.create(
        model="embed-test", input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )

    assert len(result.data) == 2
    assert result.data[1].embedding == embedding_vector([4, 5], 8)
    assert fake.last("/v1/embeddings").body["input"] == [[1, 2, 3], [4, 5]]


def test_models_list_and_retrieve(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    listed = client.models.list()

    ids = [m.id for m in listed.data]
    # The configured names, in file order (extensions may list more models after them),
    # and never the upstream ids behind them.
    assert [i for i in ids if i in UPSTREAM_IDS] == list(UPSTREAM_IDS)
    assert not set(ids) & set(UPSTREAM_IDS.values())
    cards = [m for m in listed.data if m.id in UPSTREAM_IDS]
    assert all(m.object == "model" and m.owned_by == "openai" for m in cards)
    model = client.models.retrieve("embed-test")
    assert model.id == "embed-test"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("upstream-gpt")  # upstream ids are not model names
    assert caught.value.code == "model_not_found"
    assert fake.received() == []  # listing models never calls the upstream


def test_model_names_with_slashes(
    start_gateway: Callable[..., RunningServer], fake_url: str, fake: FakeOpenAI
) -> None:
    gateway = start_gateway([model_entry("meta-llama/Llama-3.1-8B", "upstream-llama", fake_url)])

    with sdk(gateway) as client:
        assert client.models.retrieve("meta-llama/Llama-3.1-8B").id == "meta-llama/Llama-3.1-8B"
        reply = client.chat.completions.create(
            model="meta-llama/Llama-3.1-8B", messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.choices[0].message.content == "Hello! You said: hi"
    assert fake.last("/v1/chat/completions").body["model"] == "upstream-llama"
