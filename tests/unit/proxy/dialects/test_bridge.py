"""The dialect plumbing: which dialect owns a path, and reading the gateway's stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy.dialects import Dialect, DialectMap, OpenAIDialect
from proxy.dialects.bridge import StreamFailed, _chunks
from proxy.errors import UpstreamError


class Messages(Dialect):
    name = "messages"
    prefixes = ("/v1/messages",)


class Ollama(Dialect):
    name = "ollama"
    prefixes = ("/api/",)
    identified_prefixes = ("/api/",)


DIALECTS = DialectMap([Messages, Ollama])


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        ("/v1/messages", Messages),
        ("/v1/messages/count_tokens", Messages),
        ("/v1/messagesx", OpenAIDialect),
        ("/v1/chat/completions", OpenAIDialect),
        ("/api", Ollama),
        ("/api/chat", Ollama),
        ("/apix", OpenAIDialect),
    ],
)
def test_the_longest_prefix_owns_a_path_and_openai_owns_the_rest(
    path: str, owner: type[Dialect]
) -> None:
    assert DIALECTS.for_path(path) is owner


def test_identified_prefixes_are_collected() -> None:
    assert DIALECTS.identified == ("/api/",)


CHUNK = (
    b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}'
)


async def _blocks(*blocks: bytes) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block


async def _read(*blocks: bytes) -> list[str]:
    return [c.choices[0].delta.content async for c in _chunks(_blocks(*blocks))]  # type: ignore[misc]


async def test_chunks_are_read_from_blocks_of_several_events_until_done() -> None:
    two = b"data: " + CHUNK % b"a" + b"\n\ndata: " + CHUNK % b"b" + b"\n\n"
    texts = await _read(two, b"data: " + CHUNK % b"c" + b"\n\n", b"data: [DONE]\n\n")
    assert texts == ["a", "b", "c"]


async def test_an_error_event_is_raised_with_its_type_code_and_message() -> None:
    error = (
        b'data: {"error":{"message":"upstream broke","type":"server_error",'
        b'"param":null,"code":"upstream_error"}}\n\n'
    )
    with pytest.raises(StreamFailed) as raised:
        await _read(b"data: " + CHUNK % b"a" + b"\n\n", error)
    assert raised.value.message == "upstream broke"
    assert (raised.value.type, raised.value.error_code) == ("server_error", "upstream_error")


async def test_a_stream_that_ends_without_done_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        await _read(b"data: " + CHUNK % b"a" + b"\n\n")
