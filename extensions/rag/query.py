"""One embedding for a search query of any length.

A chat message can be far longer than the embedding model's context (512 tokens for the
default ``smollm2-135m-embed``), and the embedding route rightly refuses such input.
A longer query is embedded as two pieces that each fit the window, measured with the
embedding model's own tokenizer: its beginning and its end, where a question usually
sits (before or after pasted material). The two vectors are averaged, weighted by
their token counts, and re-normalised: the method OpenAI's cookbook gives for inputs
longer than the context ("Embedding texts that are longer than the model's maximum
context length"). The middle of a text longer than two windows is left out, so a
query costs at most two windows of embedding work, however long the message is.

When the gateway does not know the model's window (a remote embedding model), the
query is embedded whole.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

#: Tokens left free for the special tokens the embedding call adds (BOS, or CLS and
#: SEP), which a plain count of the text does not include.
SPECIAL_TOKENS = 2
#: A piece is cut at a word boundary when that keeps at least this share of it.
_WORD_CUT_SHARE = 0.8

Counter = Callable[[str], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class QueryWindow:
    """The embedding model's tokenizer and context, as the gateway knows them."""

    count_tokens: Counter
    """Tokens in a text, with the embedding model's tokenizer (or an estimate)."""
    context_window: Callable[[], int | None]
    """Tokens one embedding input may have; None when unknown."""


async def query_pieces(text: str, window: QueryWindow | None) -> list[tuple[str, int]]:
    """``(piece, tokens)`` to embed for ``text``: the whole text when it fits the
    window, else its longest beginning and its longest end that fit."""
    limit = window.context_window() if window is not None else None
    if window is None or limit is None:
        return [(text, 1)]
    limit = max(1, limit - SPECIAL_TOKENS)
    count = window.count_tokens
    text = text.strip()
    tokens = await count(text)
    if tokens <= limit:
        return [(text, tokens)]
    head = await _longest_fit(text, limit, count, from_end=False)
    rest = text[len(head[0]) :].lstrip()
    tokens = await count(rest)
    if tokens <= limit:
        return [head, (rest, tokens)] if rest else [head]
    return [head, await _longest_fit(rest, limit, count, from_end=True)]


async def _longest_fit(text: str, limit: int, count: Counter, *, from_end: bool) -> tuple[str, int]:
    """The longest beginning (or end) of ``text`` within ``limit`` tokens: a binary
    search on its length in characters (a longer piece has at least as many tokens),
    then cut at a word boundary when one is near. ``text`` is over the limit."""

    def take(size: int) -> str:
        return text[len(text) - size :] if from_end else text[:size]

    fits, fits_tokens, over = 1, await count(take(1)), len(text)
    while over - fits > 1:
        middle = (fits + over) // 2
        tokens = await count(take(middle))
        if tokens <= limit:
            fits, fits_tokens = middle, tokens
        else:
            over = middle
    piece = take(fits)
    cut = _word_boundary(piece, from_end)
    if cut is not None:
        tokens = await count(cut)
        if tokens <= limit:
            return cut, tokens
    return piece, fits_tokens


def _word_boundary(piece: str, from_end: bool) -> str | None:
    """``piece`` without the word cut at its inner edge, when that keeps most of it."""
    if from_end:
        spaces = [i for i in (piece.find(" "), piece.find("\n")) if i >= 0]
        start = min(spaces, default=-1)
        kept = piece[start + 1 :] if start >= 0 else None
    else:
        end = max(piece.rfind(" "), piece.rfind("\n"))
        kept = piece[:end] if end >= 0 else None
    if kept is None or len(kept) < len(piece) * _WORD_CUT_SHARE:
        return None
    return kept.strip()


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
