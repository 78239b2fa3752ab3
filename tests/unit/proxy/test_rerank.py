"""``/v1/rerank`` without a server: the request type, the answer built from scores, the
cosine fallback and the openai adapter's pass-through (upstreams faked with
``httpx.MockTransport``)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import msgspec
import pytest

from adapters.base import CallStats, Capability, Resources
from adapters.openai import OpenAIAdapter
from proxy.errors import InvalidRequest, UnsupportedCapability, UpstreamError, UpstreamRejected
from proxy.rerank import cosine_scores, ranked, rerank_capability, search_units
from proxy.schemas.base import Envelope, decode_request
from proxy.schemas.rerank import RerankRequest
from proxy.settings import settings_from_mapping


def request(**fields: Any) -> Envelope[RerankRequest]:
    body = {"model": "r", "query": "q", "documents": ["a", "b"], **fields}
    return decode_request(json.dumps(body).encode(), RerankRequest)


def refusal(body: dict[str, Any]) -> tuple[str, str | None]:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(json.dumps(body).encode(), RerankRequest)
    return caught.value.message, caught.value.param


# ------------------------------------------------------------------- the request type


def test_documents_may_be_strings_or_objects_with_text() -> None:
    envelope = request(documents=["plain", {"text": "object", "title": "kept in the body"}])
    assert envelope.params.texts() == ["plain", "object"]
    assert envelope.body["documents"][1] == {"text": "object", "title": "kept in the body"}
    assert envelope.params.return_documents is False
    assert envelope.params.top_n is msgspec.UNSET


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "r", "documents": ["a"]}, "query"),
        ({"model": "r", "query": "", "documents": ["a"]}, "query"),
        ({"model": "r", "query": "q"}, "documents"),
        ({"model": "r", "query": "q", "documents": []}, "documents"),
        ({"model": "r", "query": "q", "documents": "a"}, "documents"),
        ({"model": "r", "query": "q", "documents": [""]}, "documents[0]"),
        ({"model": "r", "query": "q", "documents": ["a", {"title": "x"}]}, "documents[1].text"),
        ({"model": "r", "query": "q", "documents": [3]}, "documents[0]"),
        ({"model": "r", "query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
        ({"model": "r", "query": "q", "documents": ["a"], "top_n": "2"}, "top_n"),
        (
            {"model": "r", "query": "q", "documents": ["a"], "return_documents": "yes"},
            "return_documents",
        ),
        ({"query": "q", "documents": ["a"]}, "model"),
    ],
)
def test_bad_requests_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    message, named = refusal(body)
    assert named == param
    assert message.startswith("Invalid request: ")


def test_more_documents_than_the_limit_are_refused() -> None:
    assert refusal({"model": "r", "query": "q", "documents": ["a"] * 10_001}) == (
        "Invalid request: Expected `array` of length <= 10000 - at `$.documents`",
        "documents",
    )


# ---------------------------------------------------------------------------- answers


def test_results_are_sorted_best_first_with_ties_in_request_order() -> None:
    params = request(documents=["a", "b", "c", "d"]).params
    answer = ranked(params, [0.1, 0.9, 0.1, 0.5], model="r", prompt_tokens=12)
    assert [(r.index, r.relevance_score) for r in answer.results] == [
        (1, 0.9),
        (3, 0.5),
        (0, 0.1),
        (2, 0.1),
    ]
    assert all(r.document is msgspec.UNSET for r in answer.results)
    wire = msgspec.to_builtins(answer)
    assert wire["id"].startswith("rerank-")
    assert {k: v for k, v in wire.items() if k != "id"} == {
        "model": "r",
        "results": [
            {"index": 1, "relevance_score": 0.9},
            {"index": 3, "relevance_score": 0.5},
            {"index": 0, "relevance_score": 0.1},
            {"index": 2, "relevance_score": 0.1},
        ],
        "usage": {"prompt_tokens": 12, "total_tokens": 12},
        "meta": {"billed_units": {"search_units": 1, "input_tokens": 12}},
    }


def test_top_n_cuts_and_return_documents_adds_the_texts() -> None:
    params = request(
        documents=["first", {"text": "second"}, "third"], top_n=2, return_documents=True
    ).params
    answer = msgspec.to_builtins(ranked(params, [0.2, 0.7, 0.4], model="r", prompt_tokens=0))
    assert answer["results"] == [
        {"index": 1, "relevance_score": 0.7, "document": {"text": "second"}},
        {"index": 2, "relevance_score": 0.4, "document": {"text": "third"}},
    ]


def test_top_n_beyond_the_documents_returns_them_all() -> None:
    params = request(top_n=10).params
    assert [r.index for r in ranked(params, [0.0, 1.0], model="r", prompt_tokens=0).results] == [
        1,
        0,
    ]


def test_search_units_count_each_hundred_documents_as_cohere_does() -> None:
    assert [search_units(n) for n in (1, 100, 101, 250)] == [1, 1, 2, 3]


# ---------------------------------------------------------------------- cosine math


def test_cosine_scores_of_known_vectors() -> None:
    scores = cosine_scores([1.0, 0.0], [[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0], [0, 0]])
    assert scores == pytest.approx([1.0, 0.0, -1.0, 1 / math.sqrt(2), 0.0], abs=1e-12)
    assert cosine_scores([3.0, 4.0], [[4.0, 3.0]]) == pytest.approx([24 / 25], abs=1e-12)


def test_vectors_of_another_length_are_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        cosine_scores([1.0, 0.0], [[1.0, 0.0, 0.0]])


# -------------------------------------------------------- which capability serves it


class _Stub:
    def __init__(self, name: str, *capabilities: Capability) -> None:
        self.name = name
        self.capabilities = frozenset(capabilities)


def test_a_reranker_is_preferred_then_any_embedding_model() -> None:
    reranker = _Stub("llamacpp", Capability.RERANK)
    embedder = _Stub("openai", Capability.EMBEDDINGS)
    assert rerank_capability("m", [embedder, reranker]) is Capability.RERANK  # type: ignore[list-item]
    assert rerank_capability("m", [embedder]) is Capability.EMBEDDINGS  # type: ignore[list-item]


def test_a_model_that_neither_reranks_nor_embeds_cannot_rerank() -> None:
    with pytest.raises(UnsupportedCapability) as caught:
        rerank_capability("smol", [_Stub("llamacpp", Capability.CHAT)])  # type: ignore[list-item]
    assert caught.value.message == (
        "Model 'smol' (llamacpp adapter) cannot rerank: it is neither a reranker nor an "
        "embedding model."
    )
    assert caught.value.param == "model"
    assert caught.value.http_status == 400


# ------------------------------------------------------------ the openai adapter


class Recorder:
    def __init__(self, answers: dict[str, httpx.Response]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.url.path, json.loads(request.content)))
        return self.answers[request.url.path]


def adapter(recorder: Recorder, **extra: Any) -> OpenAIAdapter:
    entry = {
        "name": "r",
        "adapter": "openai",
        "model": "upstream-r",
        "base_url": "http://up/v1",
        **extra,
    }
    settings = settings_from_mapping({"models": [entry]})
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    return OpenAIAdapter(settings.models[0], Resources(settings=settings, http=http))


def embeddings_answer(vectors: list[list[float]], tokens: int) -> httpx.Response:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return httpx.Response(200, json={"object": "list", "data": data, "usage": usage})


async def test_without_rerank_listed_an_embedding_upstream_reranks_by_cosine() -> None:
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]]
    recorder = Recorder({"/v1/embeddings": embeddings_answer(vectors, tokens=7)})
    remote = adapter(recorder)
    assert Capability.RERANK not in remote.capabilities
    stats = CallStats()
    answer = await remote.rerank(request(documents=["x", "y", "z"], top_n=2), stats)

    assert recorder.sent == [
        (
            "/v1/embeddings",
            {"model": "upstream-r", "input": ["q", "x", "y", "z"], "encoding_format": "float"},
        )
    ]
    wire = msgspec.to_builtins(answer)
    assert wire["results"] == [
        {"index": 1, "relevance_score": pytest.approx(0.6, abs=1e-12)},
        {"index": 0, "relevance_score": pytest.approx(0.0, abs=1e-12)},
    ]
    assert wire["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert stats.prompt_tokens == 7


async def test_with_rerank_listed_the_request_is_passed_to_the_upstream_rerank() -> None:
    upstream = {
        "model": "upstream-r",
        "usage": {"total_tokens": 11},
        "results": [{"index": 1, "relevance_score": 0.8}, {"index": 0, "relevance_score": 0.1}],
    }
    recorder = Recorder({"/v1/rerank": httpx.Response(200, json=upstream)})
    remote = adapter(recorder, capabilities=["rerank"])
    assert remote.capabilities == frozenset({Capability.RERANK})
    stats = CallStats()
    sent = request(documents=["a", {"text": "b", "id": 7}], top_n=2, rank_fields=["text"])
    answer = await remote.rerank(sent, stats)

    assert recorder.sent == [
        (
            "/v1/rerank",
            {
                "model": "upstream-r",
                "query": "q",
                "documents": ["a", {"text": "b", "id": 7}],
                "top_n": 2,
                "rank_fields": ["text"],
            },
        )
    ]
    assert json.loads(answer.content) == upstream  # type: ignore[union-attr]
    assert stats.prompt_tokens == 11


async def test_cohere_billed_units_are_read_as_usage() -> None:
    upstream = {
        "id": "x",
        "results": [{"index": 0, "relevance_score": 0.5}],
        "meta": {"billed_units": {"search_units": 1, "input_tokens": 9}},
    }
    remote = adapter(
        Recorder({"/v1/rerank": httpx.Response(200, json=upstream)}), capabilities=["rerank"]
    )
    stats = CallStats()
    await remote.rerank(request(), stats)
    assert stats.prompt_tokens == 9


async def test_a_rerank_answer_without_results_is_an_upstream_error() -> None:
    remote = adapter(
        Recorder({"/v1/rerank": httpx.Response(200, json={"data": []})}), capabilities=["rerank"]
    )
    with pytest.raises(UpstreamError) as caught:
        await remote.rerank(request(), CallStats())
    assert (
        caught.value.message == "The upstream of 'r' answered /rerank with no valid 'results' list."
    )


async def test_upstream_rerank_errors_are_mapped_like_other_calls() -> None:
    refused = httpx.Response(422, json={"message": "invalid request: too many documents"})
    remote = adapter(Recorder({"/v1/rerank": refused}), capabilities=["rerank"])
    with pytest.raises(UpstreamRejected) as caught:
        await remote.rerank(request(), CallStats())
    assert (caught.value.http_status, caught.value.message) == (
        422,
        "invalid request: too many documents",
    )


async def test_an_upstream_without_embeddings_or_rerank_cannot_rerank() -> None:
    remote = adapter(Recorder({}), capabilities=["chat"])
    with pytest.raises(UnsupportedCapability):
        await remote.rerank(request(), CallStats())


def test_a_score_that_is_not_a_number_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        ranked(request().params, [0.5, math.nan], model="r", prompt_tokens=0)
    with pytest.raises(UpstreamError):
        ranked(request().params, [0.5], model="r", prompt_tokens=0)
