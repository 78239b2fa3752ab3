"""Wire schemas: validation that names the parameter, and bodies that keep unknown fields."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from proxy.errors import InvalidRequest
from proxy.schemas.base import UNSET, decode_request
from proxy.schemas.chat import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    StreamOptions,
)
from proxy.schemas.completions import CompletionRequest
from proxy.schemas.embeddings import EmbeddingRequest


def chat(**fields: Any) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return json.dumps(body).encode()


def test_unknown_fields_are_kept_in_the_body() -> None:
    raw = chat(
        top_k=40,
        provider={"order": ["a"]},
        messages=[{"role": "user", "content": "hi", "cache_control": {"type": "ephemeral"}}],
    )

    envelope = decode_request(raw, ChatCompletionRequest)

    assert envelope.body == json.loads(raw)
    assert envelope.body["top_k"] == 40
    assert envelope.body["messages"][0]["cache_control"] == {"type": "ephemeral"}
    assert envelope.model == "m"


def test_typed_view_reads_parameters() -> None:
    envelope = decode_request(
        chat(temperature=0.3, stream=True, stream_options={"include_usage": True}, stop="x"),
        ChatCompletionRequest,
    )

    params = envelope.params
    assert params.temperature == 0.3
    assert params.stop == "x"
    assert params.stream is True
    assert params.wants_usage_chunk is True
    assert params.top_p is UNSET  # not sent differs from null


def test_null_and_unset_differ() -> None:
    envelope = decode_request(chat(temperature=None), ChatCompletionRequest)

    assert envelope.params.temperature is None
    assert envelope.params.seed is UNSET
    assert envelope.body["temperature"] is None


def test_content_parts_and_tool_messages_validate() -> None:
    messages = [
        {"role": "developer", "content": "rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    envelope = decode_request(chat(messages=messages), ChatCompletionRequest)

    assert [m.role for m in envelope.params.messages] == ["developer", "user", "assistant", "tool"]
    assert envelope.body["messages"] == messages


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"n": 1.5}, "n"),
        ({"model": 7}, "model"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
    ],
)
def test_wrong_types_name_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(chat(**fields), ChatCompletionRequest)

    assert caught.value.param == param
    assert caught.value.http_status == 400


def test_missing_required_field_is_named() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(b'{"model": "m"}', ChatCompletionRequest)
    assert caught.value.param == "messages"


@pytest.mark.parametrize("raw", [b"", b"{", b"nope", b"[]", b'"text"', b"null"])
def test_malformed_bodies_are_invalid_requests(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode_request(raw, ChatCompletionRequest)


@pytest.mark.parametrize(
    "prompt", ["text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]], ids=["str", "strs", "ids", "idss"]
)
def test_completion_prompt_shapes(prompt: Any) -> None:
    raw = json.dumps({"model": "m", "prompt": prompt, "suffix": "end"}).encode()
    envelope = decode_request(raw, CompletionRequest)

    assert envelope.params.prompt == prompt
    assert envelope.params.suffix == "end"


@pytest.mark.parametrize(
    "value", ["text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]], ids=["str", "strs", "ids", "idss"]
)
def test_embedding_input_shapes(value: Any) -> None:
    raw = json.dumps({"model": "m", "input": value, "dimensions": 4}).encode()
    envelope = decode_request(raw, EmbeddingRequest)

    assert envelope.params.input == value
    assert envelope.params.dimensions == 4
    assert envelope.params.encoding_format == "float"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": [1.5]}, "input[0]"),
        ({"input": {"a": 1}}, "input"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ],
)
def test_embedding_errors_name_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(json.dumps({"model": "m", **fields}).encode(), EmbeddingRequest)
    assert caught.value.param == param


def test_upstream_body_swaps_the_model_without_touching_the_clients_body() -> None:
    envelope = decode_request(chat(top_k=3), ChatCompletionRequest)

    upstream = envelope.upstream_body("provider/model-v2")

    assert upstream["model"] == "provider/model-v2"
    assert upstream["top_k"] == 3
    assert envelope.body["model"] == "m"
    assert envelope.upstream_body("m") == envelope.body


def test_update_changes_both_views() -> None:
    envelope = decode_request(chat(temperature=0.1, top_k=3), ChatCompletionRequest)

    envelope.update(temperature=0.9, stream_options=StreamOptions(include_usage=True))
    envelope.update(top_k=UNSET)

    assert envelope.params.temperature == 0.9
    assert envelope.body["temperature"] == 0.9
    assert envelope.body["stream_options"] == {"include_usage": True}
    assert envelope.params.wants_usage_chunk is True
    assert "top_k" not in envelope.body


def test_responses_omit_unset_fields_but_keep_null_finish_reason() -> None:
    chunk = ChatCompletionChunk(
        id="c",
        created=1,
        model="m",
        choices=[ChunkChoice(index=0, delta=Delta(content="hi"), finish_reason=None)],
    )

    encoded = json.loads(msgspec.json.encode(chunk))

    assert encoded == {
        "id": "c",
        "created": 1,
        "model": "m",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }
