"""``/v1/embeddings``: one pooled, L2-normalized vector per input.

Pooling (mean by default) is done by llama.cpp over each sequence; several inputs
share a batch as separate sequences. An input longer than the context window is a 400
(``context_length_exceeded``), never silently truncated.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from adapters.base import CallStats
from adapters.llamacpp.scheduler import call_job
from proxy.errors import ContextLengthExceeded, InvalidRequest
from proxy.schemas.base import UNSET, Envelope
from proxy.schemas.embeddings import Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage

if TYPE_CHECKING:
    from adapters.llamacpp import LlamaCppAdapter


def input_tokens(llm: Any, raw: Any) -> list[list[int]]:
    """Each input as tokens (strings with the model's special tokens added)."""
    if isinstance(raw, str):
        inputs: list[Any] = [raw]
    elif raw and all(isinstance(t, int) for t in raw):
        inputs = [raw]
    else:
        inputs = list(raw)
    if not inputs:
        raise InvalidRequest("'input' must not be empty.", param="input")
    n_vocab, limit = llm.n_vocab(), llm.n_batch
    out = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(f"input[{i}] is an empty string.", param="input")
            tokens = llm.tokenize(item.encode(), add_bos=True, special=True)
        else:
            if not item or any(not 0 <= t < n_vocab for t in item):
                raise InvalidRequest(
                    f"input[{i}] must be non-empty token ids inside the vocabulary.", param="input"
                )
            tokens = list(item)
        if len(tokens) > limit:
            raise ContextLengthExceeded(
                f"input[{i}] is {len(tokens)} tokens; this embedding model takes at most {limit}.",
                param="input",
            )
        out.append(tokens)
    return out


def embed_tokens(llm: Any, inputs: list[list[int]], cancelled: Any) -> np.ndarray:
    """Pooled, normalized vectors for ``inputs`` (worker thread)."""
    n_embd, n_batch = llm.n_embd(), llm.n_batch
    n_seq_max = llm.context_params.n_seq_max
    vectors = np.empty((len(inputs), n_embd), dtype=np.float32)
    batch, ctx = llm._batch, llm._ctx
    pending: list[int] = []
    used = 0

    def flush() -> None:
        nonlocal used
        if not pending:
            return
        ctx.kv_cache_clear()
        ctx.decode(batch)
        for seq, row in enumerate(pending):
            pointer = llama_cpp.llama_get_embeddings_seq(ctx.ctx, seq)
            vectors[row] = np.ctypeslib.as_array(pointer, shape=(n_embd,))
        batch.reset()
        pending.clear()
        used = 0

    batch.reset()
    for row, tokens in enumerate(inputs):
        if cancelled.is_set():
            break
        if used + len(tokens) > n_batch or len(pending) >= n_seq_max:
            flush()
        batch.add_sequence(tokens, len(pending), True)
        pending.append(row)
        used += len(tokens)
    flush()
    ctx.kv_cache_clear()
    llm.reset()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


async def embed(
    adapter: LlamaCppAdapter, envelope: Envelope[EmbeddingRequest], stats: CallStats
) -> EmbeddingResponse:
    params = envelope.params
    started = time.perf_counter()
    slot = adapter.slot
    async with adapter.manager.use(slot) as llm:
        if params.dimensions is not UNSET and params.dimensions != llm.n_embd():
            raise InvalidRequest(
                f"This model's embeddings have {llm.n_embd()} dimensions; "
                "'dimensions' cannot change that.",
                param="dimensions",
            )
        inputs = await asyncio.to_thread(input_tokens, llm, params.input)
        async with slot.queue.turn(adapter.config.name):
            vectors = await call_job(slot.executor, lambda c: embed_tokens(llm, inputs, c))
    stats.upstream_s += time.perf_counter() - started
    total = sum(len(t) for t in inputs)
    stats.add_usage(total, 0)
    if params.encoding_format == "base64":
        data = [
            Embedding(index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode())
            for i, v in enumerate(vectors)
        ]
    else:
        data = [Embedding(index=i, embedding=v.tolist()) for i, v in enumerate(vectors)]
    return EmbeddingResponse(
        data=data,
        model=adapter.config.name,
        usage=EmbeddingUsage(prompt_tokens=total, total_tokens=total),
    )
