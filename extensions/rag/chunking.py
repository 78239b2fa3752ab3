"""Token-aware chunking with overlap that keeps each chunk's position in its source.

Text is cut at the most natural boundary that keeps a piece under the budget: blank
lines (paragraphs) first, then line ends, then sentence ends, then spaces, and only for
a single over-long "word" (a base64 blob, a minified line) in the middle of characters.
The pieces are packed greedily into chunks of at most ``max_tokens``; the next chunk
starts with about ``overlap`` tokens from the end of the previous one (whole pieces
while they fit, then words), so a sentence cut by a boundary appears whole in one chunk.

Token counts come from ``count_tokens`` when the caller has the embedding model's
tokenizer; otherwise ``approx_tokens`` estimates them. A chunk's count is the sum of its
pieces' counts, which for BPE tokenizers is at or slightly above the true count: chunks
err on the small side, never past the model's window.

Chunking runs in a worker thread; with a ``WorkBudget`` it stops (raising) when the
request is abandoned or makes more chunks than it may embed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import msgspec

from extensions.rag.budget import WorkBudget

TokenCounter = Callable[[str], int]

_WORDISH = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Estimate BPE tokens without a tokenizer: one per word or punctuation mark, and at
    least one per four characters (long identifiers, numbers and non-Latin scripts split
    into several tokens). Within ~25% of real tokenizers on prose and code."""
    if not text:
        return 0
    return max(len(_WORDISH.findall(text)), (len(text) + 3) // 4)


class Chunk(msgspec.Struct, kw_only=True):
    """A chunk's text and where it sits: ``start``/``end`` are character offsets into the
    text given to ``chunk_text`` (plus ``base``), so ``text == source[start:end]``."""

    text: str
    index: int
    start: int
    end: int
    page: int | None = None
    tokens: int = 0


class _Piece(NamedTuple):
    start: int
    end: int
    tokens: int


# Boundaries from coarsest to finest; each piece keeps the separator that ends it, so
# the pieces of a span are contiguous and cover it exactly.
_LEVELS = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n"),
    re.compile(r"(?<=[.!?;:])\s+"),
    re.compile(r"\s+"),
)
_WORDS = re.compile(r"\S+\s*")


def _split_at(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in pattern.finditer(text, start, end):
        if match.end() > cursor and match.start() > cursor:
            spans.append((cursor, match.end()))
            cursor = match.end()
    if cursor < end:
        spans.append((cursor, end))
    return spans


def _pieces(
    text: str, start: int, end: int, budget: int, count: TokenCounter, level: int = 0
) -> list[_Piece]:
    """Split ``text[start:end]`` into contiguous pieces of at most ``budget`` tokens."""
    tokens = count(text[start:end])
    if tokens <= budget:
        return [_Piece(start, end, tokens)]
    if level >= len(_LEVELS):
        return _hard_split(text, start, end, budget, count, tokens)
    spans = _split_at(text, start, end, _LEVELS[level])
    if len(spans) == 1:
        return _pieces(text, start, end, budget, count, level + 1)
    out: list[_Piece] = []
    for s, e in spans:
        out.extend(_pieces(text, s, e, budget, count, level + 1))
    return out


def _hard_split(
    text: str, start: int, end: int, budget: int, count: TokenCounter, tokens: int
) -> list[_Piece]:
    out: list[_Piece] = []
    step = max(1, (end - start) * budget // max(tokens, 1))
    cursor = start
    while cursor < end:
        stop = min(end, cursor + step)
        n = count(text[cursor:stop])
        while n > budget and stop - cursor > 1:
            stop = cursor + (stop - cursor) // 2
            n = count(text[cursor:stop])
        out.append(_Piece(cursor, stop, n))
        cursor = stop
    return out


def _tail_start(
    text: str, pieces: list[_Piece], first: int, last: int, overlap: int, count: TokenCounter
) -> tuple[int, int]:
    """Start offset and token count of the last ~``overlap`` tokens of pieces[first:last]."""
    used = 0
    start = pieces[last - 1].end
    index = last - 1
    while index >= first and used + pieces[index].tokens <= overlap:
        used += pieces[index].tokens
        start = pieces[index].start
        index -= 1
    if index >= first and used < overlap:
        piece = pieces[index]
        words = [m.span() for m in _WORDS.finditer(text, piece.start, piece.end)]
        for w_start, w_end in reversed(words):
            n = count(text[w_start:w_end])
            if used + n > overlap:
                break
            used += n
            start = w_start
    return start, used


def _checked(count: TokenCounter, budget: WorkBudget) -> TokenCounter:
    def checked(text: str) -> int:
        budget.check()
        return count(text)

    return checked


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def chunk_text(
    text: str,
    *,
    max_tokens: int,
    overlap: int = 0,
    count_tokens: TokenCounter | None = None,
    base: int = 0,
    first_index: int = 0,
    page: int | None = None,
    budget: WorkBudget | None = None,
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``max_tokens`` with ``overlap`` tokens carried.

    ``base`` is added to every offset and ``first_index`` to every chunk index, so the
    sections of one document (a PDF's pages) can be chunked one by one and still give
    positions in the whole document. Whitespace-only text gives no chunks. ``budget``
    is checked before every token count and charged for every chunk (see
    ``WorkBudget``): it raises ``WorkAbandoned`` or ``TooManyChunks``.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    overlap = max(0, min(overlap, max_tokens // 2))
    count = count_tokens or approx_tokens
    if budget is not None:
        count = _checked(count, budget)
    start, end = _trimmed(text, 0, len(text))
    if start == end:
        return []
    pieces = _pieces(text, start, end, max_tokens, count)
    chunks: list[Chunk] = []
    i = 0
    carry: tuple[int, int] | None = None  # (start offset, tokens) carried from the last chunk
    while i < len(pieces):
        chunk_start, tokens = carry if carry else (pieces[i].start, 0)
        j = i
        while j < len(pieces) and tokens + pieces[j].tokens <= max_tokens:
            tokens += pieces[j].tokens
            j += 1
        if j == i:  # the carried overlap leaves no room for the next piece: drop it
            carry = None
            continue
        s, e = _trimmed(text, chunk_start, pieces[j - 1].end)
        if s < e:
            if budget is not None:
                budget.spend_chunk()
            chunks.append(
                Chunk(
                    text=text[s:e],
                    index=first_index + len(chunks),
                    start=base + s,
                    end=base + e,
                    page=page,
                    tokens=tokens,
                )
            )
        carry = (
            _tail_start(text, pieces, i, j, overlap, count) if overlap and j < len(pieces) else None
        )
        if carry and carry[1] == 0:
            carry = None
        i = j
    return chunks
