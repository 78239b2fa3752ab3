"""Model-backed helpers the lifespan lends to extensions (see ``ExtensionServices``).

Embeddings for RAG go through Switchyard's own router, so any configured embedding
model works (local or remote) and Chroma never downloads a model of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from adapters.base import Adapter, CallStats, Capability
from extensions.pipeline import response_dict
from proxy.errors import UpstreamError
from proxy.rerank import rerank_capability
from proxy.router import Router
from proxy.schemas.base import convert_request
from proxy.schemas.embeddings import EmbeddingRequest
from proxy.schemas.rerank import RerankRequest

#: Roughly four characters a token for English text: used when a model has no tokenizer here.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def make_embedder(
    router: Router, model: str
) -> Callable[[list[str]], Awaitable[list[list[float]]]]:
    async def embed(texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        envelope = convert_request({"model": model, "input": texts}, EmbeddingRequest)
        stats = CallStats()

        async def invoke(adapter: Adapter) -> Any:
            return await adapter.embed(envelope, stats)

        result = response_dict(await router.call(model, Capability.EMBEDDINGS, invoke, stats))
        rows = sorted(result["data"], key=lambda row: row["index"])
        return [row["embedding"] for row in rows]

    return embed


def make_reranker(router: Router, model: str) -> Callable[[str, list[str]], Awaitable[list[float]]]:
    """Relevance scores of texts for a query, in the texts' order, from ``model`` as
    ``/v1/rerank`` serves it (a reranker, or an embedding model by cosine)."""

    async def rerank(query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        envelope = convert_request(
            {"model": model, "query": query, "documents": texts}, RerankRequest
        )
        stats = CallStats()
        capability = rerank_capability(model, (d.adapter for d in router.deployments_of(model)))

        async def invoke(adapter: Adapter) -> Any:
            return await adapter.rerank(envelope, stats)

        result = response_dict(await router.call(model, capability, invoke, stats))
        scores: dict[int, float] = {}
        for row in result.get("results") or ():
            scores[int(row["index"])] = float(row["relevance_score"])
        if sorted(scores) != list(range(len(texts))):
            raise UpstreamError(
                f"The reranker '{model}' scored {len(scores)} of {len(texts)} texts."
            )
        return [scores[i] for i in range(len(texts))]

    return rerank


def _first_adapter(router: Router, model: str) -> Adapter | None:
    deployments = router.deployments.get(model)
    return deployments[0].adapter if deployments else None


def make_token_counter(router: Router) -> Callable[[str, str], Awaitable[int]]:
    async def count_tokens(model: str, text: str) -> int:
        adapter = _first_adapter(router, model)
        counted = await adapter.count_text_tokens(text) if adapter else None
        return counted if counted is not None else estimate_tokens(text)

    return count_tokens


def make_context_window(router: Router) -> Callable[[str], int | None]:
    def context_window(model: str) -> int | None:
        adapter = _first_adapter(router, model)
        return adapter.context_window if adapter else None

    return context_window
