"""The Ollama translators as pure functions: requests in, internal bodies out, and
chat completions / chunk streams back into Ollama's objects."""

from __future__ import annotations

import base64
import math
from typing import Any

import msgspec
import pytest

from proxy.dialects.ollama import OllamaDialect
from proxy.dialects.ollama.answers import (
    StreamState,
    Timing,
    chat_answer,
    chat_final,
    done_reason,
    timestamp,
)
from proxy.dialects.ollama.translate import (
    chat_body,
    chat_messages,
    check_options,
    generate_body,
    image_url,
    keep_alive_s,
    listed_name,
    model_name,
    response_format,
    sampling,
)
from proxy.dialects.ollama.wire import OllamaChatRequest, OllamaGenerateRequest, OllamaMessage
from proxy.errors import InvalidRequest, ModelNotFound, UpstreamError
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, Usage

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 8


def chat(**fields: Any) -> OllamaChatRequest:
    return msgspec.convert({"model": "m", **fields}, OllamaChatRequest)


def generate(**fields: Any) -> OllamaGenerateRequest:
    return msgspec.convert({"model": "m", **fields}, OllamaGenerateRequest)


def messages(*items: dict[str, Any]) -> list[OllamaMessage]:
    return msgspec.convert(list(items), list[OllamaMessage])


# ------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("smol", "smol"),
        ("smol:latest", "smol"),
        ("qwen:7b", "qwen:7b"),
        ("smol:latest+persona:editor", "smol+persona:editor"),
        ("smol+persona:editor:latest", "smol+persona:editor"),
        ("persona:editor", "persona:editor"),
    ],
)
def test_model_names(given: str, meant: str) -> None:
    assert model_name(given) == meant


def test_listed_names_get_latest_unless_tagged() -> None:
    assert [listed_name(n) for n in ("smol", "persona:editor")] == [
        "smol:latest",
        "persona:editor",
    ]


# ---------------------------------------------------------------------- options


def test_options_types_are_checked_like_ollama() -> None:
    assert check_options({"num_predict": 5.0, "temperature": 1, "stop": ["x"], "foo": 1}) == {
        "num_predict": 5,
        "temperature": 1.0,
        "stop": ["x"],
    }
    assert check_options({"seed": None}) == {}
    for bad, message in [
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"num_ctx": True}, 'option "num_ctx" must be of type integer'),
        ({"stop": "x"}, 'option "stop" must be of type array'),
        ({"stop": [1]}, 'option "stop" must be of an array of strings'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
    ]:
        with pytest.raises(InvalidRequest) as raised:
            check_options(bad)
        assert raised.value.message == message


def test_sampling_mapping() -> None:
    options = {
        "num_predict": 9, "temperature": 0.1, "top_p": 0.2, "top_k": 3, "min_p": 0.05,
        "repeat_penalty": 1.2, "presence_penalty": 0.5, "frequency_penalty": 0.25,
        "seed": 11, "stop": ["a"], "num_ctx": 100, "num_thread": 4,
    }  # fmt: skip
    assert sampling(options, 128) == {
        "temperature": 0.1, "top_p": 0.2, "top_k": 3, "min_p": 0.05, "repeat_penalty": 1.2,
        "presence_penalty": 0.5, "frequency_penalty": 0.25, "max_tokens": 9, "seed": 11,
        "stop": ["a"],
    }  # fmt: skip
    assert sampling({"num_predict": -1, "seed": -1, "stop": []}, None) == {}
    with pytest.raises(InvalidRequest) as raised:
        sampling({"num_ctx": 129}, 128)
    assert raised.value.param == "num_ctx"
    assert sampling({"num_ctx": 10**6}, None) == {}  # unknown window: nothing to check


# ----------------------------------------------------------------------- format


def test_formats() -> None:
    assert response_format(None) is None
    assert response_format("") is None
    assert response_format("json") == {"type": "json_object"}
    schema = {"type": "object"}
    assert response_format(schema) == {
        "type": "json_schema",
        "json_schema": {"name": "format", "schema": schema},
    }
    with pytest.raises(InvalidRequest):
        response_format("yaml")


# ------------------------------------------------------------------------ images


def test_images_are_sniffed_into_data_urls() -> None:
    png = base64.b64encode(PNG).decode()
    assert image_url(png, "x") == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{png}"},
    }
    jpeg = base64.b64encode(JPEG).decode()
    assert image_url(jpeg, "x")["image_url"]["url"].startswith("data:image/jpeg;base64,")
    webp = base64.b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8 ").decode()
    assert image_url(webp, "x")["image_url"]["url"].startswith("data:image/webp;base64,")
    with pytest.raises(InvalidRequest) as raised:
        image_url("!!", "messages[0].images")
    assert raised.value.message == "messages[0].images: an image is not valid base64"
    with pytest.raises(InvalidRequest):
        image_url(base64.b64encode(b"plain text").decode(), "x")


# ---------------------------------------------------------------------- messages


def test_tool_calls_and_results_are_paired() -> None:
    converted = chat_messages(
        messages(
            {"role": "USER", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"function": {"name": "a", "arguments": {"x": 1}}},
                    {"id": "given", "function": {"name": "b", "arguments": {}}},
                ],
            },
            {"role": "tool", "content": "for b", "tool_name": "b"},
            {"role": "tool", "content": "for a"},
        )
    )
    assert converted == [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1_0", "type": "function",
                 "function": {"name": "a", "arguments": '{"x": 1}'}},
                {"id": "given", "type": "function", "function": {"name": "b", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "content": "for b", "tool_call_id": "given"},
        {"role": "tool", "content": "for a", "tool_call_id": "call_1_0"},
    ]  # fmt: skip


def test_tool_message_with_its_own_id() -> None:
    converted = chat_messages(
        messages(
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "a"}}]},
            {"role": "tool", "content": "r", "tool_call_id": "c1", "tool_name": "zzz"},
        )
    )
    assert converted[1] == {"role": "tool", "content": "r", "tool_call_id": "c1"}


def test_lenient_inputs_clients_send() -> None:
    converted = chat_messages(
        messages(
            {"role": "assistant", "content": None},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"x":1}'}}],
            },
            {"role": "tool", "content": None},
        )
    )
    assert converted == [
        {"role": "assistant", "content": ""},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
            ],
        },
        {"role": "tool", "content": "", "tool_call_id": "c"},
    ]
    with pytest.raises(InvalidRequest) as raised:
        chat_messages(
            messages(
                {
                    "role": "assistant",
                    "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}],
                }
            )
        )
    assert raised.value.message == "The arguments for tool 'f' are not a JSON object: [1]"


def test_user_images_and_unknown_roles() -> None:
    png = base64.b64encode(PNG).decode()
    [converted] = chat_messages(messages({"role": "user", "content": "", "images": [png]}))
    assert converted["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    ]
    with pytest.raises(InvalidRequest) as raised:
        chat_messages(messages({"role": "wizard", "content": "x"}))
    assert raised.value.param == "messages[0].role"


def test_chat_body() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    body = chat_body(
        chat(messages=[{"role": "user", "content": "q"}], tools=[tool], format="json"),
        "smol",
        {"num_predict": 3},
        extension={"persona": "editor"},
    )
    assert body == {
        "model": "smol",
        "messages": [{"role": "user", "content": "q"}],
        "tools": [tool],
        "max_tokens": 3,
        "response_format": {"type": "json_object"},
        "stream": True,
        "stream_options": {"include_usage": True},
        "switchyard": {"persona": "editor"},
    }
    whole = chat_body(chat(messages=[], stream=False), "smol", {})
    assert whole == {"model": "smol", "messages": []}
    with pytest.raises(InvalidRequest):
        chat_body(chat(messages=[], tools=[{"type": "web_search"}]), "smol", {})


def test_generate_bodies() -> None:
    kind, body = generate_body(generate(prompt="p", system="s", stream=False), "smol", {})
    assert (kind, body) == (
        "chat",
        {
            "model": "smol",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}],
        },
    )
    kind, body = generate_body(generate(prompt="p", raw=True, stream=False), "smol", {})
    assert (kind, body) == ("completions", {"model": "smol", "prompt": "p"})
    kind, body = generate_body(generate(prompt="a", suffix="b", context=[1, 2]), "smol", {})
    assert kind == "completions"
    assert body == {
        "model": "smol", "prompt": "a", "suffix": "b", "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    for bad in (
        generate(prompt="p", raw=True, system="s"),
        generate(prompt="p", template="{{ .Prompt }}"),
        generate(prompt="p", raw=True, format="json"),
        generate(prompt="p", suffix="x", system="s"),
    ):
        with pytest.raises(InvalidRequest):
            generate_body(bad, "smol", {})


# ----------------------------------------------------------------------- answers


def test_timestamps_are_go_rfc3339() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert timestamp(1.5) == "1970-01-01T00:00:01.500000Z"


def test_done_reasons() -> None:
    assert [done_reason(r) for r in ("stop", "length", "tool_calls", None)] == [
        "stop",
        "length",
        "stop",
        "stop",
    ]


def _completion(message: dict[str, Any], finish: str) -> ChatCompletion:
    return msgspec.convert(
        {
            "id": "x",
            "created": 0,
            "model": "up",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        ChatCompletion,
    )


def test_chat_answer_with_tool_calls() -> None:
    completion = _completion(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
            ],
        },
        "tool_calls",
    )
    answer = chat_answer(completion, "smol:latest", 0, Timing(total_s=2.0, eval_s=0.5))
    assert answer == {
        "model": "smol:latest",
        "created_at": "1970-01-01T00:00:00.000000Z",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}
            ],
        },
        "done": True,
        "done_reason": "stop",
        "total_duration": 2_000_000_000,
        "prompt_eval_count": 3,
        "eval_count": 2,
        "eval_duration": 500_000_000,
    }


def test_arguments_that_are_not_an_object_are_an_upstream_error() -> None:
    completion = _completion(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
            ],
        },
        "tool_calls",
    )
    with pytest.raises(UpstreamError):
        chat_answer(completion, "m", 0, Timing(total_s=1.0))


def _chunk(
    delta: dict[str, Any], finish: str | None = None, usage: Any = None
) -> ChatCompletionChunk:
    body: dict[str, Any] = {
        "id": "x",
        "created": 0,
        "model": "up",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return msgspec.convert(body, ChatCompletionChunk)


def test_stream_state_gathers_text_calls_finish_and_usage() -> None:
    state = StreamState()
    texts = [
        state.text_of(_chunk({"role": "assistant", "content": ""})),
        state.text_of(_chunk({"content": "Hi"})),
        state.text_of(
            _chunk(
                {"tool_calls": [{"index": 0, "id": "c0", "type": "function",
                                 "function": {"name": "f", "arguments": ""}}]}
            )
        ),
        state.text_of(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]})),
        state.text_of(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 2}"}}]})),
        state.text_of(_chunk({}, "tool_calls")),
        state.text_of(
            _chunk({}, usage={"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10})
        ),
    ]  # fmt: skip
    assert texts == ["", "Hi", "", "", "", "", ""]
    assert state.tool_calls() == [
        {"id": "c0", "function": {"index": 0, "name": "f", "arguments": {"a": 2}}}
    ]
    assert state.usage == Usage(prompt_tokens=4, completion_tokens=6, total_tokens=10)
    final = chat_final(state, "m", 0, Timing(total_s=1.0, prompt_eval_s=0.25, eval_s=0.75))
    assert final == {
        "model": "m",
        "created_at": "1970-01-01T00:00:00.000000Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "total_duration": 1_000_000_000,
        "prompt_eval_count": 4,
        "prompt_eval_duration": 250_000_000,
        "eval_count": 6,
        "eval_duration": 750_000_000,
    }


# -------------------------------------------------------------------- keep_alive


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (None, None), (0, 0.0), ("0", 0.0), (30, 30.0), (1.5, 1.5), (-1, math.inf),
        ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("-1m", math.inf), ("1.5s", 1.5),
    ],
)  # fmt: skip
def test_keep_alive(given: Any, seconds: float | None) -> None:
    assert keep_alive_s(given) == seconds


@pytest.mark.parametrize("bad", ["soon", "5", "5mm", "", "m5"])
def test_bad_keep_alive(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        keep_alive_s(bad)


# ------------------------------------------------------------------------ errors


def test_errors_render_in_ollama_shape() -> None:
    status, body, headers = OllamaDialect.render_error(ModelNotFound("model 'x' not found"))
    assert (status, body, headers) == (404, b'{"error":"model \'x\' not found"}', {})
