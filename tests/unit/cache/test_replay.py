"""Replaying a stored answer as a stream, and assembling one from a stream, checked
against openai-python's own types."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from openai.types import Completion, CompletionChoice
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from adapters.base import CallStats
from proxy.cache.replay import Assembler, cacheable, chat_chunks, completion_chunks, replay
from proxy.schemas.chat import ChatCompletionChunk as OurChunk
from proxy.schemas.chat import ChunkChoice, Delta

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
ANSWER: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello there",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ],
    "usage": USAGE,
}


def sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)


def test_chat_replay_is_role_content_tool_calls_finish_then_usage() -> None:
    chunks = chat_chunks(ANSWER, include_usage=True)
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert [c.choices[0].delta.role if c.choices else None for c in parsed] == [
        "assistant",
        None,
        None,
        None,
        None,
    ]
    assert parsed[1].choices[0].delta.content == "Hello there"
    call = parsed[2].choices[0].delta.tool_calls[0]  # type: ignore[index]
    assert (call.index, call.id, call.function.name, call.function.arguments) == (  # type: ignore[union-attr]
        0,
        "call_1",
        "lookup",
        '{"q": "x"}',
    )
    assert [c.choices[0].finish_reason for c in parsed[:4]] == [None, None, None, "tool_calls"]
    assert parsed[4].choices == [] and parsed[4].usage is not None
    assert parsed[4].usage.total_tokens == 10
    assert {c.id for c in parsed} == {"chatcmpl-1"}
    assert all(c.object == "chat.completion.chunk" for c in parsed)
    assert len(chat_chunks(ANSWER, include_usage=False)) == 4


def test_completion_replay_matches_the_streamed_completion_shape() -> None:
    answer = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": "and so on", "finish_reason": "length", "logprobs": None}],
        "usage": USAGE,
    }
    chunks = completion_chunks(answer, True)
    # openai-python's Completion allows no null finish_reason, which streams carry before
    # the last chunk: the SDK builds those without validating. The rest are validated.
    content = chunks[0]["choices"][0]
    assert set(content) == set(CompletionChoice.model_fields) and content["finish_reason"] is None
    parsed = [Completion.model_validate(c) for c in chunks[1:]]
    assert content["text"] + parsed[0].choices[0].text == "and so on"
    assert parsed[0].choices[0].finish_reason == "length"
    assert parsed[1].choices == [] and parsed[1].usage is not None
    assert parsed[1].usage.total_tokens == 10


async def test_a_replayed_stream_assembles_back_into_the_same_answer() -> None:
    blocks = [block async for block in replay("chat", msgspec.json.encode(ANSWER), True)]
    assembler = Assembler("chat")
    assembler.items.extend(blocks)
    content = assembler.answer(CallStats())
    assert content is not None
    rebuilt = ChatCompletion.model_validate_json(content)
    assert rebuilt.model_dump(exclude_none=True) == ChatCompletion.model_validate(
        ANSWER
    ).model_dump(exclude_none=True)


def test_an_upstream_stream_split_in_pieces_assembles_into_one_answer() -> None:
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "lookup"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "x"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    assembler = Assembler("chat")
    # Upstream blocks may hold several events; local adapters yield typed chunks.
    assembler.items.extend([sse(events[:2]), sse(events[2:5]), sse(events[5:6])])
    assembler.items.append(
        OurChunk(
            id="c",
            created=1,
            model="m",
            choices=[ChunkChoice(index=0, delta=Delta(), finish_reason="tool_calls")],
        )
    )
    stats = CallStats(prompt_tokens=7, completion_tokens=3)
    content = assembler.answer(stats)
    assert content is not None
    answer = ChatCompletion.model_validate_json(content)
    message = answer.choices[0].message
    assert message.content == "Hello" and answer.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    function = message.tool_calls[0].function  # type: ignore[union-attr]
    assert (function.name, function.arguments) == ("lookup", '{"q": "x"}')
    assert answer.usage is not None and answer.usage.total_tokens == 10  # from the stats


def test_incomplete_or_failed_answers_are_not_cached() -> None:
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    cut = Assembler("chat")
    cut.items.append(sse([{**head, "choices": [{"index": 0, "delta": {"content": "Hi"}}]}]))
    assert cut.answer(CallStats()) is None  # no finish reason: the stream was cut
    filtered = Assembler("chat")
    filtered.items.append(
        sse([{**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]}])
    )
    assert filtered.answer(CallStats()) is None
    errored = Assembler("chat")
    errored.items.append(sse([{"error": {"message": "boom"}}]))
    assert errored.answer(CallStats()) is None
    assert cacheable(msgspec.json.encode(ANSWER))
    unfinished = {**ANSWER, "choices": [{**ANSWER["choices"][0], "finish_reason": None}]}
    assert not cacheable(msgspec.json.encode(unfinished))
    assert cacheable(b'{"object": "list", "data": [{"embedding": [0.5]}]}')
    assert not cacheable(b'{"error": {"message": "x"}}')
    assert not cacheable(b"not json")


def _token(text: str, logprob: float) -> dict[str, Any]:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": []}


def test_logprobs_and_refusals_survive_a_stream_into_the_cache_and_back() -> None:
    """A streamed miss with ``logprobs: true`` is stored with every token's log
    probability (the key has ``logprobs`` in it: a whole request is served from it), and a
    streamed hit carries them again; a refusal is kept in both directions too."""
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    tokens = [_token("Hel", -0.1), _token("lo", -0.2)]

    def chunk(index: int, delta: dict[str, Any], logprobs: Any = None, finish: Any = None) -> Any:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "choices": [choice]}

    events = [
        chunk(0, {"role": "assistant", "content": ""}),
        chunk(0, {"content": "Hel"}, {"content": tokens[:1], "refusal": None}),
        chunk(0, {"content": "lo"}, {"content": tokens[1:], "refusal": None}),
        chunk(0, {}, finish="stop"),
        chunk(1, {"role": "assistant", "refusal": ""}),
        chunk(1, {"refusal": "I can't "}),
        chunk(1, {"refusal": "help with that."}),
        chunk(1, {}, finish="stop"),
    ]
    assembler = Assembler("chat")
    assembler.items.append(sse(events))
    content = assembler.answer(CallStats())
    assert content is not None
    whole = ChatCompletion.model_validate_json(content)
    assert whole.choices[0].logprobs is not None
    assert [(t.token, t.logprob) for t in whole.choices[0].logprobs.content or []] == [
        ("Hel", -0.1),
        ("lo", -0.2),
    ]
    assert whole.choices[1].message.refusal == "I can't help with that."

    replayed = [
        ChatCompletionChunk.model_validate(c) for c in chat_chunks(json.loads(content), False)
    ]
    with_tokens = [c for c in replayed if c.choices[0].logprobs is not None]
    assert [c.choices[0].delta.content for c in with_tokens] == ["Hello"]
    assert [t.token for t in with_tokens[0].choices[0].logprobs.content or []] == ["Hel", "lo"]  # type: ignore[union-attr]
    refusals = [c.choices[0].delta.refusal for c in replayed if c.choices[0].index == 1]
    assert "".join(r for r in refusals if r) == "I can't help with that."


def test_completion_logprobs_are_joined_across_a_stream() -> None:
    head = {"id": "c", "object": "text_completion", "created": 1, "model": "m"}

    def piece(text: str, offset: int, finish: Any = None) -> dict[str, Any]:
        logprobs = {
            "tokens": [text],
            "token_logprobs": [-0.5],
            "top_logprobs": [{text: -0.5}],
            "text_offset": [offset],
        }
        choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "choices": [choice]}

    assembler = Assembler("completions")
    assembler.items.append(sse([piece("Hi", 0), piece(" there", 2, "length")]))
    content = assembler.answer(CallStats())
    assert content is not None
    choice = Completion.model_validate_json(content).choices[0]
    assert choice.text == "Hi there" and choice.logprobs is not None
    assert choice.logprobs.tokens == ["Hi", " there"]
    assert choice.logprobs.text_offset == [0, 2]
