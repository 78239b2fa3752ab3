"""Search queries longer than the embedding model's context are embedded by pieces.

The tokenizer here counts words (a stand-in with the same shape as the real one: more
text, more tokens); the embedder refuses inputs over the window as llama.cpp does. The
real SmolLM2 embedding model is exercised in tests/e2e/test_extensions_local.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from extensions.rag import ingest
from extensions.rag.config import RagConfig
from extensions.rag.query import SPECIAL_TOKENS, QueryWindow, combined_vector, query_pieces
from extensions.rag.schemas import DocumentIn
from extensions.rag.store import RagStore
from proxy.errors import ContextLengthExceeded
from tests.support.rag_fakes import bow_vector

WINDOW = 12
LIMIT = WINDOW - SPECIAL_TOKENS


async def count_words(text: str) -> int:
    return len(text.split())


def words_window(window: int | None = WINDOW) -> QueryWindow:
    return QueryWindow(count_tokens=count_words, context_window=lambda: window)


async def test_a_short_query_is_one_piece() -> None:
    assert await query_pieces("  moon tides  ", words_window()) == [("moon tides", 2)]


async def test_an_unknown_window_leaves_the_query_whole() -> None:
    text = " ".join(["word"] * 100)
    assert await query_pieces(text, words_window(None)) == [(text, 1)]
    assert await query_pieces(text, None) == [(text, 1)]


async def test_a_query_up_to_two_windows_is_cut_at_a_word_into_two_pieces() -> None:
    words = [f"w{i}" for i in range(15)]
    pieces = await query_pieces(" ".join(words), words_window())
    assert pieces == [(" ".join(words[:10]), LIMIT), (" ".join(words[10:]), 5)]


async def test_a_longer_query_is_embedded_by_its_beginning_and_its_end() -> None:
    words = [f"w{i}" for i in range(95)]
    pieces = await query_pieces(" ".join(words), words_window())
    assert pieces == [(" ".join(words[:10]), LIMIT), (" ".join(words[85:]), LIMIT)]


async def test_pieces_fit_a_real_tokenizer_shape_without_splitting_words() -> None:
    """Tokens by characters (a token per three letters), so a cut word costs tokens."""

    async def count_chars(text: str) -> int:
        return sum(-(-len(word) // 3) for word in text.split())

    text = " ".join(["lighthouse", "keeper", "harbour"] * 40)
    window = QueryWindow(count_tokens=count_chars, context_window=lambda: 32)
    pieces = await query_pieces(text, window)
    assert len(pieces) == 2
    for piece, tokens in pieces:
        assert tokens == await count_chars(piece) <= 32 - SPECIAL_TOKENS
        assert set(piece.split()) <= {"lighthouse", "keeper", "harbour"}  # whole words only
    assert text.startswith(pieces[0][0]) and text.endswith(pieces[1][0])


def test_pieces_are_averaged_by_their_tokens_and_normalised() -> None:
    assert combined_vector([[1.0, 0.0], [0.0, 1.0]], [3, 1]) == pytest.approx(
        [3 / math.sqrt(10), 1 / math.sqrt(10)]
    )
    assert combined_vector([[0.6, 0.8]], [7]) == [0.6, 0.8]


async def test_search_with_a_query_longer_than_the_window(tmp_path: Path) -> None:
    received: list[str] = []

    async def strict_embed(texts: list[str]) -> list[list[float]]:
        """Refuses what does not fit, as llama.cpp's embedding route does."""
        for text in texts:
            if len(text.split()) + SPECIAL_TOKENS > WINDOW:
                raise ContextLengthExceeded("too long", param="input")
        received.extend(texts)
        return [bow_vector(t) for t in texts]

    config = RagConfig(chunk_tokens=16, chunk_overlap=2)
    store = RagStore(config, tmp_path, strict_embed, query_window=words_window())
    await store.create_collection("key-a", "notes")
    await ingest.add_documents(
        store,
        "key-a",
        "notes",
        [
            DocumentIn(id="tides", text="Tides follow the moon."),
            DocumentIn(id="bread", text="Yeast makes bread rise."),
        ],
    )
    received.clear()
    question = "Please tell me about the moon and the tides. " * 8 + "Why do tides follow it?"
    hits = await store.search("key-a", ["notes"], question, k=2)
    assert hits[0].source_id == "tides"
    words = question.split()
    assert [text.split() for text in received] == [words[:LIMIT], words[-LIMIT:]]

    received.clear()
    await store.search("key-a", ["notes"], "moon tides", k=1)
    assert received == ["moon tides"]
    await store.aclose()
