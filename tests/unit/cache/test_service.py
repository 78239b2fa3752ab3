"""``ResponseCache`` on its own: modes, a backend that fails, and the semantic lookup."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.base import RawJSON
from proxy.cache.backends import MemoryBackend
from proxy.cache.config import ModelCacheConfig, SemanticCacheConfig
from proxy.cache.service import ResponseCache
from proxy.context import RequestInfo
from proxy.errors import InvalidRequest
from proxy.metrics import Metrics


def answer(text: str, n: int) -> bytes:
    return json.dumps(
        {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


class Upstream:
    def __init__(self) -> None:
        self.calls = 0

    async def call(self) -> RawJSON:
        self.calls += 1
        return RawJSON(answer(f"answer {self.calls}", self.calls))

    async def open_stream(self) -> AsyncIterator[Any]:
        raise AssertionError("not streamed here")


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


async def ask(
    cache: ResponseCache, upstream: Upstream, text: str, *, mode: str | None = None, **extra: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    headers = [(b"x-switchyard-cache", mode.encode())] if mode else []
    info = RequestInfo(request_id="r", started=0.0, headers=headers)
    response = await cache.serve(
        "chat",
        info,
        "m",
        body(text, **extra),
        streaming=False,
        include_usage=False,
        call=upstream.call,
        open_stream=upstream.open_stream,
    )
    return json.loads(response.content), dict(response.headers)


class Broken:
    name = "broken"

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("redis is away")

        return fail


async def test_a_backend_that_fails_is_a_miss_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = ResponseCache(Broken(), Metrics(), {"m": ModelCacheConfig()})  # type: ignore[arg-type]
    upstream = Upstream()
    with caplog.at_level(logging.WARNING, logger="switchyard.cache"):
        first, head = await ask(cache, upstream, "hi")
        second, _ = await ask(cache, upstream, "hi")
    assert head["x-switchyard-cache"] == "miss"
    assert (first["id"], second["id"], upstream.calls) == ("chatcmpl-1", "chatcmpl-2", 2)
    assert "ConnectionError" in caplog.text and "redis is away" not in caplog.text


async def test_modes_and_a_bad_header() -> None:
    metrics = Metrics()
    cache = ResponseCache(MemoryBackend(10**6), metrics, {"m": ModelCacheConfig()})
    upstream = Upstream()
    assert (await ask(cache, upstream, "hi"))[1]["x-switchyard-cache"] == "miss"
    hit, head = await ask(cache, upstream, "hi", mode="USE")
    assert head["x-switchyard-cache"] == "hit" and hit["id"] == "chatcmpl-1"
    assert (await ask(cache, upstream, "hi", mode="bypass"))[0]["id"] == "chatcmpl-2"
    refreshed, head = await ask(cache, upstream, "hi", mode="refresh")
    assert head["x-switchyard-cache"] == "miss" and refreshed["id"] == "chatcmpl-3"
    assert (await ask(cache, upstream, "hi"))[0]["id"] == "chatcmpl-3"
    with pytest.raises(InvalidRequest) as refused:
        await ask(cache, upstream, "hi", mode="always")
    assert refused.value.param == "X-Switchyard-Cache"
    rendered = metrics.render().decode()
    for result, count in (("miss", 1), ("hit", 2), ("bypass", 1), ("refresh", 1)):
        line = f'switchyard_cache_requests_total{{model="m",result="{result}"}} {count}.0'
        assert line in rendered


def vector_of(text: str) -> list[float]:
    """A toy embedding: the counts of a few letters, so rewordings land close."""
    return [float(text.lower().count(c)) for c in "aeiostnrl"]


async def test_a_near_duplicate_is_a_semantic_hit_with_its_similarity() -> None:
    embedded: list[str] = []

    async def embed(texts: list[str]) -> list[list[float]]:
        embedded.extend(texts)
        return [vector_of(t) for t in texts]

    config = ModelCacheConfig(semantic=SemanticCacheConfig(embedding_model="e", threshold=0.97))
    cache = ResponseCache(MemoryBackend(10**6), Metrics(), {"m": config}, {"e": embed})
    upstream = Upstream()
    await ask(cache, upstream, "the rain in spain stays mainly on the plain")
    near, head = await ask(cache, upstream, "The rain in Spain stays mainly on the plain!")
    assert head["x-switchyard-cache"] == "hit" and near["id"] == "chatcmpl-1"
    similarity = float(head["x-switchyard-cache-similarity"])
    assert 0.97 <= similarity <= 1.0
    far, head = await ask(cache, upstream, "zzz qqq")
    assert far["id"] == "chatcmpl-2"
    assert head["x-switchyard-cache"] == "miss" and "x-switchyard-cache-similarity" not in head
    # The same question with other parameters is another question.
    other, head = await ask(
        cache, upstream, "The rain in Spain stays mainly on the plain!", temperature=2
    )
    assert head["x-switchyard-cache"] == "miss" and other["id"] == "chatcmpl-3"
    exact, head = await ask(cache, upstream, "zzz qqq")
    assert head["x-switchyard-cache"] == "hit" and "x-switchyard-cache-similarity" not in head
    assert exact["id"] == "chatcmpl-2"
    # An exact hit needs no embedding: four lookups embedded, the exact one did not.
    assert len(embedded) == 4
