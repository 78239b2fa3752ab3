"""RAG with ``rag.rerank_model``: the nearest chunks are reordered by a reranker before
the best ``top_k`` are kept, and the ranking RAG returns changes on a case built for it.

The embedding model is the bag-of-words upstream (``rag_fakes``); the reranker is the
fake OpenAI upstream's ``/rerank`` (the share of the query's words in a chunk, stop
words included). The chunk "france capital" is the embedding's best (cosine 1: the
same content words) and the reranker's worst but one (2 of the query's 6 words); the
chunk answering the question has every word of the query, so the reranker puts it
first. Two gateways differ only in ``rag.rerank_model``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI, rerank_score
from tests.support.rag_api import embedding_model
from tests.support.rag_fakes import bow_vector, embeddings_upstream
from tests.support.servers import RunningServer, serve_gateway

KEY = "sk-rag-rerank"
QUERY = "what is the capital of france"
WRONG = "france capital"
RIGHT = "what is the capital of france ? paris is the capital of france and its largest city"
OTHER = "bananas are yellow"
DOCS = [
    {"id": "wrong", "text": WRONG},
    {"id": "right", "text": RIGHT},
    {"id": "other", "text": OTHER},
]


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, fake_url: str
) -> Iterator[dict[str, RunningServer]]:
    root: Path = tmp_path_factory.mktemp("rag-rerank")
    with embeddings_upstream() as (_, url):
        models = [
            embedding_model(url, timeout_s=10),
            model_entry("reranker", "upstream-rerank", fake_url, capabilities=["rerank"]),
            model_entry("gpt-test", "upstream-gpt", fake_url),
        ]

        def config(name: str, **rag: Any) -> dict[str, Any]:
            return {
                "server": {"api_keys": [KEY], "data_dir": str(root / name)},
                "defaults": False,
                "models": models,
                "rag": {"top_k": 1, **rag},
            }

        with (
            serve_gateway(config("plain")) as plain,
            serve_gateway(
                config("reranked", rerank_model="reranker", rerank_candidates=5)
            ) as reranked,
        ):
            for gateway in (plain, reranked):
                api = rag_api(gateway)
                assert api.post("/collections", json={"name": "facts"}).status_code == 201
                added = api.post("/collections/facts/documents", json={"documents": DOCS})
                assert added.status_code == 200, added.text
            yield {"plain": plain, "reranked": reranked}


def rag_api(gateway: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{gateway.url}/v1/switchyard/rag",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )


def search(gateway: RunningServer, k: int | None = None) -> list[tuple[str, float]]:
    body: dict[str, Any] = {"query": QUERY, **({"k": k} if k else {})}
    found = rag_api(gateway).post("/collections/facts/search", json=body)
    assert found.status_code == 200, found.text
    return [(hit["source_id"], hit["score"]) for hit in found.json()["data"]]


def cosine(a: str, b: str) -> float:
    return sum(x * y for x, y in zip(bow_vector(a), bow_vector(b), strict=True))


def test_the_case_is_built_so_that_the_two_orders_differ() -> None:
    assert cosine(QUERY, WRONG) > cosine(QUERY, RIGHT) > cosine(QUERY, OTHER)
    assert rerank_score(QUERY, RIGHT) > rerank_score(QUERY, WRONG) > rerank_score(QUERY, OTHER)


def test_without_a_reranker_the_embedding_order_is_kept(
    gateways: dict[str, RunningServer], fake: FakeOpenAI
) -> None:
    assert [source for source, _ in search(gateways["plain"])] == ["wrong"]  # rag.top_k
    assert [source for source, _ in search(gateways["plain"], k=3)] == ["wrong", "right", "other"]
    assert fake.received("/v1/rerank") == []


def test_with_a_reranker_the_candidates_are_reordered_before_the_cut(
    gateways: dict[str, RunningServer], fake: FakeOpenAI
) -> None:
    assert search(gateways["reranked"]) == [("right", 1.0)]
    sent = fake.last("/v1/rerank").body
    # every candidate (3 < rag.rerank_candidates), in the embedding's order
    assert sent == {"model": "upstream-rerank", "query": QUERY, "documents": [WRONG, RIGHT, OTHER]}

    assert search(gateways["reranked"], k=3) == [
        ("right", 1.0),
        ("wrong", round(rerank_score(QUERY, WRONG), 6)),
        ("other", 0.0),
    ]


def test_chat_retrieval_cites_the_reranked_chunk(
    gateways: dict[str, RunningServer], fake: FakeOpenAI
) -> None:
    cited = {}
    for name, gateway in gateways.items():
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-test",
            messages=[{"role": "user", "content": QUERY}],
            extra_body={"switchyard": {"rag": ["facts"]}},
        )
        cited[name] = [s["source_id"] for s in json.loads(raw.headers["x-switchyard-sources"])]
        system = fake.last("/v1/chat/completions").body["messages"][0]["content"]
        assert (RIGHT if name == "reranked" else WRONG) in system
    assert cited == {"plain": ["wrong"], "reranked": ["right"]}
