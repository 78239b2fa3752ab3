"""``/v1/rerank`` on a reranker GGUF (``embedding: true, pooling: rank``).

A reranker is a cross-encoder: each (query, document) pair is one sequence, and
llama.cpp's rank pooling runs the model's classifier head over it, giving one score per
sequence. The input is built as llama-server's ``format_prompt_rerank`` builds it:

- when the GGUF has a rerank template (``tokenizer.chat_template.rerank``, as Qwen3
  rerankers have), ``{query}`` and ``{document}`` are put into it and the text is
  tokenized with special tokens parsed and none added;
- otherwise query and document are tokenized as plain text (no special tokens added
  or parsed) and joined as ``[BOS] query [EOS] [SEP] document [EOS]``, each mark only
  where the vocabulary adds it (``add_bos``/``add_eos``/``add_sep``), EOS falling back
  to SEP for vocabularies without one.

The score is the first value of the pooled output, the classifier's raw output (a
logit for bge-reranker), as llama-server reports it. Pairs share a batch as separate
sequences, as embeddings do; one pair longer than the context is a 400 naming it.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import llama_cpp

from adapters.base import CallStats
from adapters.llamacpp.embeddings import pooled
from adapters.llamacpp.scheduler import call_job
from proxy.errors import ContextLengthExceeded
from proxy.rerank import ranked
from proxy.schemas.base import Envelope
from proxy.schemas.rerank import RerankRequest, RerankResponse

if TYPE_CHECKING:
    from adapters.llamacpp import LlamaCppAdapter

TEMPLATE_KEY = "tokenizer.chat_template.rerank"
_PLACEHOLDER = re.compile(r"\{query\}|\{document\}")


@dataclass(frozen=True, slots=True)
class RerankMarks:
    """The special tokens that frame a pair; ``None`` where the vocabulary adds none."""

    bos: int | None
    eos: int | None
    sep: int | None


def marks_of(vocab: Any) -> RerankMarks:
    """The framing tokens of a llama.cpp vocabulary, as ``format_prompt_rerank`` picks
    them (EOS falls back to SEP when the vocabulary has no EOS)."""
    null = llama_cpp.LLAMA_TOKEN_NULL
    eos = llama_cpp.llama_vocab_eos(vocab)
    if eos == null:
        eos = llama_cpp.llama_vocab_sep(vocab)
    return RerankMarks(
        bos=llama_cpp.llama_vocab_bos(vocab) if llama_cpp.llama_vocab_get_add_bos(vocab) else None,
        eos=eos if llama_cpp.llama_vocab_get_add_eos(vocab) else None,
        sep=llama_cpp.llama_vocab_sep(vocab) if llama_cpp.llama_vocab_get_add_sep(vocab) else None,
    )


def join_pair(query: list[int], document: list[int], marks: RerankMarks) -> list[int]:
    """``[BOS] query [EOS] [SEP] document [EOS]``, each mark only where it is set."""
    out: list[int] = []
    if marks.bos is not None:
        out.append(marks.bos)
    out.extend(query)
    if marks.eos is not None:
        out.append(marks.eos)
    if marks.sep is not None:
        out.append(marks.sep)
    out.extend(document)
    if marks.eos is not None:
        out.append(marks.eos)
    return out


def fill_template(template: str, query: str, document: str) -> str:
    """The rerank template with ``{query}`` and ``{document}`` filled in one pass (a
    query that contains the text ``{document}`` stays as it was written)."""
    values = {"{query}": query, "{document}": document}
    return _PLACEHOLDER.sub(lambda m: values[m.group(0)], template)


def pair_tokens(llm: Any, query: str, documents: list[str]) -> list[list[int]]:
    """Each (query, document) pair as the model's tokens, each within one batch."""
    template = (getattr(llm, "metadata", None) or {}).get(TEMPLATE_KEY)
    limit = llm.n_batch
    pairs: list[list[int]] = []
    if template:
        for document in documents:
            text = fill_template(template, query, document)
            pairs.append(llm.tokenize(text.encode(), add_bos=False, special=True))
    else:
        marks = marks_of(llm._model.vocab)
        query_tokens = llm.tokenize(query.encode(), add_bos=False, special=False)
        for document in documents:
            doc_tokens = llm.tokenize(document.encode(), add_bos=False, special=False)
            pairs.append(join_pair(query_tokens, doc_tokens, marks))
    for i, tokens in enumerate(pairs):
        if len(tokens) > limit:
            raise ContextLengthExceeded(
                f"The query with documents[{i}] is {len(tokens)} tokens; this reranker "
                f"takes at most {limit} per pair.",
                param=f"documents[{i}]",
            )
    return pairs


async def rerank(
    adapter: LlamaCppAdapter, envelope: Envelope[RerankRequest], stats: CallStats
) -> RerankResponse:
    params = envelope.params
    started = time.perf_counter()
    slot = adapter.slot
    async with adapter.manager.use(slot) as llm:
        pairs = await asyncio.to_thread(pair_tokens, llm, params.query, params.texts())
        async with slot.queue.turn(adapter.config.name):
            scores = await call_job(slot.executor, lambda c: pooled(llm, pairs, c, width=1))
    stats.upstream_s += time.perf_counter() - started
    total = sum(len(p) for p in pairs)
    stats.add_usage(total, 0)
    return ranked(
        params, [float(s) for s in scores[:, 0]], model=adapter.config.name, prompt_tokens=total
    )
