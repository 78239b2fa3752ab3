"""Reranking, whatever the backend: the answer built from scores, and the embedding
fallback.

A model reranks in one of two ways, chosen per model by ``rerank_capability``:

- its deployments have ``Capability.RERANK`` (a reranker GGUF on llama.cpp's rank
  pooling, an upstream with ``/rerank``): their ``Adapter.rerank`` scores the documents;
- otherwise, when they have ``Capability.EMBEDDINGS``: ``Adapter.rerank``'s default,
  ``rerank_by_embeddings``, embeds the query and the documents in one embeddings call
  through the adapter's own ``embed`` and scores each document by the cosine similarity
  of its vector and the query's (in ``[-1, 1]``). Any embedding model, local or remote,
  reranks this way without code of its own.

A model with neither gets a 400 saying it cannot rerank. The choice is made once per
request for the model named: a model's ``fallbacks`` serve its rerank requests only
when they rerank the same way (a reranker's fallbacks are rerankers).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from adapters.base import Capability, RawJSON
from proxy.errors import InvalidRequest, UnsupportedCapability, UpstreamError, shown
from proxy.schemas.base import UNSET, Envelope, convert_request
from proxy.schemas.embeddings import EmbeddingRequest
from proxy.schemas.rerank import (
    DOCUMENTS_PER_SEARCH_UNIT,
    BilledUnits,
    RerankedDocument,
    RerankMeta,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
)

if TYPE_CHECKING:
    from adapters.base import Adapter, CallStats


def rerank_capability(model: str, adapters: Iterable[Adapter]) -> Capability:
    """The capability whose deployments serve ``/v1/rerank`` for ``model``: ``RERANK``
    where one has it, else ``EMBEDDINGS`` (the cosine fallback); neither is a 400."""
    adapters = list(adapters)
    for capability in (Capability.RERANK, Capability.EMBEDDINGS):
        if any(capability in a.capabilities for a in adapters):
            return capability
    name = adapters[0].name if adapters else "no"
    raise UnsupportedCapability(
        f"Model '{shown(model)}' ({name} adapter) cannot rerank: it is neither a reranker "
        "nor an embedding model.",
        param="model",
    )


def search_units(documents: int) -> int:
    return max(1, math.ceil(documents / DOCUMENTS_PER_SEARCH_UNIT))


def ranked(
    request: RerankRequest, scores: Sequence[float], *, model: str, prompt_tokens: int
) -> RerankResponse:
    """The answer for ``scores`` (one per document, in request order): best first, ties
    in request order, cut to ``top_n``, with the documents when asked for."""
    texts = request.texts()
    if len(scores) != len(texts) or not all(math.isfinite(s) for s in scores):
        raise UpstreamError(
            f"The model gave {len(scores)} scores for {len(texts)} documents, or a score "
            "that is not a number."
        )
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if request.top_n is not UNSET:
        order = order[: request.top_n]
    results = [
        RerankResult(
            index=i,
            relevance_score=float(scores[i]),
            document=RerankedDocument(text=texts[i]) if request.return_documents else UNSET,
        )
        for i in order
    ]
    return RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}",
        model=model,
        results=results,
        usage=RerankUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens),
        meta=RerankMeta(
            billed_units=BilledUnits(
                search_units=search_units(len(texts)), input_tokens=prompt_tokens
            )
        ),
    )


def cosine_scores(query: Sequence[float], documents: Sequence[Sequence[float]]) -> list[float]:
    """The cosine similarity of each document vector with the query vector; a zero
    vector is similar to nothing (0.0)."""
    q = np.asarray(query, dtype=np.float64)
    d = np.asarray(documents, dtype=np.float64).reshape(len(documents), -1)
    if d.shape[1] != q.shape[0]:
        raise UpstreamError("The embedding model returned vectors of different lengths.")
    norms = np.linalg.norm(d, axis=1) * np.linalg.norm(q)
    dots = d @ q
    safe = np.where(norms == 0, 1.0, norms)
    return [float(x) for x in np.where(norms == 0, 0.0, dots / safe)]


_INPUT = re.compile(r"\binput\[(\d+)\]")


def _rerank_field(match: re.Match[str]) -> str:
    """``input[i]`` of the embeddings call as the rerank request's field."""
    index = int(match.group(1))
    return "query" if index == 0 else f"documents[{index - 1}]"


def _vectors(result: Any, expected: int) -> list[list[float]]:
    try:
        body = (
            msgspec.json.decode(result.content)
            if isinstance(result, RawJSON)
            else msgspec.to_builtins(result)
        )
        rows = sorted(body["data"], key=lambda row: row["index"])
        vectors = [row["embedding"] for row in rows]
    except (KeyError, TypeError, ValueError, msgspec.DecodeError):
        raise UpstreamError("The embedding model's answer has no embeddings.") from None
    if len(vectors) != expected or not all(isinstance(v, list) for v in vectors):
        raise UpstreamError(
            f"The embedding model returned {len(vectors)} float vectors for {expected} texts."
        )
    return vectors


async def rerank_by_embeddings(
    adapter: Adapter, request: Envelope[RerankRequest], stats: CallStats
) -> RerankResponse:
    """Score by cosine similarity of embeddings, through ``adapter.embed`` (one call
    for the query and every document); usage is the embedding call's."""
    params = request.params
    texts = params.texts()
    embed_body = {
        "model": params.model,
        "input": [params.query, *texts],
        "encoding_format": "float",
    }
    envelope = convert_request(embed_body, EmbeddingRequest)
    try:
        embedded = await adapter.embed(envelope, stats)
    except InvalidRequest as exc:  # "input[2] is too long" is about documents[1]
        named = _INPUT.search(exc.message)
        if exc.param is not None and exc.param.startswith("input"):
            exc.param = _rerank_field(named) if named else "documents"
        exc.message = _INPUT.sub(_rerank_field, exc.message)
        raise
    vectors = _vectors(embedded, len(texts) + 1)
    scores = cosine_scores(vectors[0], vectors[1:])
    return ranked(params, scores, model=adapter.config.name, prompt_tokens=stats.prompt_tokens)
