"""One embedding for a search query of any length.

A chat message can be far longer than the embedding model's context (512 tokens for the
default ``smollm2-135m-embed``), and the embedding route rightly refuses such input.
A query is therefore cut into pieces that each fit the window, counted with the
embedding model's own tokenizer; the pieces are embedded together and their vectors
averaged, weighted by their token counts, then re-normalised. This is the method
OpenAI's cookbook gives for inputs longer than the context ("Embedding texts that are
longer than the model's maximum context length"), and for mean-pooled models it
approximates the embedding of the whole text. At most ``MAX_QUERY_PIECES`` pieces are
embedded; text past them is dropped (a query is truncated, never refused).

When the gateway does not know the model's window (a remote embedding model), the
query is embedded whole.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

#: The most pieces one query is embedded in; the rest of a longer text is dropped.
MAX_QUERY_PIECES = 8
#: Tokens left free for the special tokens the embedding call adds (BOS, or CLS and
#: SEP), which a plain count of the text does not include.
SPECIAL_TOKENS = 2
#: A piece is cut at the last whitespace when that keeps at least this share of it.
_WORD_CUT_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class QueryWindow:
    """The embedding model's tokenizer and context, as the gateway knows them."""

    count_tokens: Callable[[str], Awaitable[int]]
    """Tokens in a text, with the embedding model's tokenizer (or an estimate)."""
    context_window: Callable[[], int | None]
    """Tokens one embedding input may have; None when unknown."""


async def query_pieces(
    text: str, window: QueryWindow | None, max_pieces: int = MAX_QUERY_PIECES
) -> list[tuple[str, int]]:
    """``text`` as consecutive ``(piece, tokens)`` that each fit the window."""
    limit = window.context_window() if window is not None else None
    if window is None or limit is None:
        return [(text, 1)]
    limit = max(1, limit - SPECIAL_TOKENS)
    count = window.count_tokens
    pieces: list[tuple[str, int]] = []
    rest = text.strip()
    while rest and len(pieces) < max_pieces:
        tokens = await count(rest)
        if tokens <= limit:
            pieces.append((rest, tokens))
            break
        piece, tokens = await _longest_prefix(rest, limit, count)
        pieces.append((piece, tokens))
        rest = rest[len(piece) :].lstrip()
    return pieces


async def _longest_prefix(
    text: str, limit: int, count: Callable[[str], Awaitable[int]]
) -> tuple[str, int]:
    """The longest prefix of ``text`` within ``limit`` tokens (binary search on
    characters; a prefix's token count grows with its length), cut at a word boundary
    when one is near the end. ``text`` itself is known to be over the limit."""
    fits, fits_tokens, over = 1, await count(text[:1]), len(text)
    while over - fits > 1:
        middle = (fits + over) // 2
        tokens = await count(text[:middle])
        if tokens <= limit:
            fits, fits_tokens = middle, tokens
        else:
            over = middle
    space = max(text.rfind(" ", 0, fits + 1), text.rfind("\n", 0, fits + 1))
    if space >= fits * _WORD_CUT_SHARE:
        piece = text[:space]
        tokens = await count(piece)
        if tokens <= limit:
            return piece, tokens
    return text[:fits], fits_tokens


def combined_vector(vectors: list[list[float]], weights: list[int]) -> list[float]:
    """The weighted mean of ``vectors``, L2-normalised (one vector is returned as is)."""
    if len(vectors) == 1:
        return vectors[0]
    size = len(vectors[0])
    total = [0.0] * size
    for vector, weight in zip(vectors, weights, strict=True):
        for i in range(size):
            total[i] += vector[i] * weight
    norm = math.sqrt(sum(v * v for v in total))
    return [v / norm for v in total] if norm else total
