"""Reranking: ``POST /v1/rerank``, in the shape Cohere and Jina share.

The request is the common core of Cohere's ``/v1/rerank`` and Jina's ``/v1/rerank``
(llama.cpp's server, vLLM and TEI-compatible servers take it too)::

    {"model": "...", "query": "...", "documents": ["text", {"text": "..."}],
     "top_n": 3, "return_documents": true}

``documents`` are strings or objects with a ``text`` field (other fields of an object,
and other request fields such as Cohere's ``rank_fields`` or ``max_tokens_per_doc``,
are not read here and are forwarded to upstreams that have ``/rerank``). ``top_n``
defaults to every document; ``return_documents`` defaults to ``false``, as on Cohere
(Jina's default is ``true``). A request passed through to an upstream's ``/rerank`` is
forwarded as the client sent it, so there an absent ``return_documents`` means what the
upstream makes of it, and the answer is the upstream's own.

The answer::

    {"id": "rerank-...", "model": "...",
     "results": [{"index": 2, "relevance_score": 0.91, "document": {"text": "..."}}],
     "usage": {"prompt_tokens": 42, "total_tokens": 42},
     "meta": {"billed_units": {"search_units": 1, "input_tokens": 42}}}

``results`` are sorted by ``relevance_score``, highest first (ties keep the documents'
order), cut to ``top_n``; ``index`` is the document's position in the request.
``usage`` is Jina's (``total_tokens``) with OpenAI's ``prompt_tokens`` beside it;
``meta.billed_units`` is Cohere's (``search_units``: one per query of up to 100
documents, as Cohere counts them), so both SDKs read their usage where they expect it.

What a score means depends on the backend: a reranker model's own score (llama.cpp's
rank pooling gives the classifier's raw output, as llama-server does), an upstream's
score as it sent it, or, for an embedding model, the cosine similarity of the query's
and the document's vectors, in ``[-1, 1]``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class RerankDocumentObject(msgspec.Struct, kw_only=True):
    """A document given as an object; only ``text`` is read (other keys are kept in the
    request body for upstreams)."""

    text: NonEmpty


RerankDocument = NonEmpty | RerankDocumentObject
MAX_DOCUMENTS = 10_000
"""Most documents one request may rank (Cohere's limit on a request's chunks)."""


class RerankRequest(WireRequest):
    model: str
    query: NonEmpty
    documents: Annotated[list[RerankDocument], msgspec.Meta(min_length=1, max_length=MAX_DOCUMENTS)]
    top_n: Annotated[int, msgspec.Meta(ge=1)] | UnsetType = UNSET
    return_documents: bool = False

    def texts(self) -> list[str]:
        """Each document's text, in request order."""
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankedDocument(WireResponse):
    text: str


class RerankResult(WireResponse):
    index: int
    relevance_score: float
    document: RerankedDocument | UnsetType = UNSET


class RerankUsage(WireResponse):
    prompt_tokens: int
    total_tokens: int


class BilledUnits(WireResponse):
    search_units: int
    input_tokens: int


class RerankMeta(WireResponse):
    billed_units: BilledUnits


class RerankResponse(WireResponse):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage
    meta: RerankMeta


DOCUMENTS_PER_SEARCH_UNIT = 100
