"""Token-aware chunking: budgets, overlap, boundaries and positions."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from extensions.rag.budget import TooManyChunks, WorkAbandoned, WorkBudget
from extensions.rag.chunking import approx_tokens, chunk_text


def words(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return len(text.split())


PROSE = " ".join(f"Sentence {i} is about topic {i % 7} and nothing else." for i in range(80))


def test_approx_tokens_counts_words_punctuation_and_long_runs() -> None:
    assert approx_tokens("") == 0
    assert approx_tokens("Hello, world!") == 4
    assert approx_tokens("x" * 400) == 100  # one long "word" is still many tokens
    assert approx_tokens("def f(a, b): return a+b") >= 12


def test_chunks_respect_the_budget_and_give_exact_positions() -> None:
    chunks = chunk_text(PROSE, max_tokens=40, overlap=8, count_tokens=words)
    assert len(chunks) > 5
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert PROSE[chunk.start : chunk.end] == chunk.text
        assert words(chunk.text) <= 40
        assert chunk.text == chunk.text.strip()
    assert chunks[0].start == 0
    assert chunks[-1].end == len(PROSE)


def test_consecutive_chunks_overlap_and_cover_everything() -> None:
    chunks = chunk_text(PROSE, max_tokens=40, overlap=8, count_tokens=words)
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "the next chunk starts inside the previous one"
        shared = PROSE[after.start : before.end]
        assert 1 <= words(shared) <= 8
        assert after.start > before.start
    covered: set[int] = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, c in enumerate(PROSE) if not c.isspace())


def test_without_overlap_chunks_are_disjoint() -> None:
    chunks = chunk_text(PROSE, max_tokens=40, overlap=0, count_tokens=words)
    for before, after in itertools.pairwise(chunks):
        assert after.start >= before.end


def test_paragraphs_are_not_split_when_they_fit() -> None:
    paragraphs = [
        "Alpha paragraph talks about apples. " * 3,
        "Beta paragraph talks about bananas. " * 3,
        "Gamma paragraph talks about cherries. " * 3,
    ]
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = chunk_text(text, max_tokens=20, overlap=0, count_tokens=words)
    assert [c.text for c in chunks] == [p.strip() for p in paragraphs]


def test_code_is_cut_at_line_ends() -> None:
    code = "\n".join(f"def function_{i}(x):\n    return x * {i}\n" for i in range(30))
    chunks = chunk_text(code, max_tokens=30, overlap=0)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.startswith("def function_")
        assert code[chunk.end : chunk.end + 1] in ("", "\n")


def test_an_overlong_word_is_split_into_pieces_within_budget() -> None:
    blob = "A" * 5000
    chunks = chunk_text(f"start {blob} end", max_tokens=50, overlap=10)
    assert all(approx_tokens(c.text) <= 50 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "").count("A") >= 5000


def test_base_first_index_and_page_are_applied() -> None:
    chunks = chunk_text(PROSE[:400], max_tokens=30, base=1000, first_index=7, page=3)
    assert chunks[0].index == 7 and chunks[0].page == 3
    assert chunks[0].start >= 1000
    assert PROSE[chunks[0].start - 1000 : chunks[0].end - 1000] == chunks[0].text


def test_whitespace_gives_no_chunks_and_budget_must_be_positive() -> None:
    assert chunk_text("  \n\n \t", max_tokens=10) == []
    with pytest.raises(ValueError):
        chunk_text("text", max_tokens=0)


def test_short_text_is_one_chunk() -> None:
    [chunk] = chunk_text("  One short note.  ", max_tokens=100, overlap=10)
    assert chunk.text == "One short note." and (chunk.start, chunk.end) == (2, 17)


def test_a_budget_bounds_the_chunks_made() -> None:
    unbounded = chunk_text(PROSE, max_tokens=40, count_tokens=words)
    budget = WorkBudget(max_chunks=len(unbounded))
    assert chunk_text(PROSE, max_tokens=40, count_tokens=words, budget=budget) == unbounded
    assert budget.chunks == len(unbounded)
    shared = WorkBudget(max_chunks=len(unbounded) + 2)  # one budget across two texts
    chunk_text(PROSE, max_tokens=40, count_tokens=words, budget=shared)
    with pytest.raises(TooManyChunks) as caught:
        chunk_text(PROSE, max_tokens=40, count_tokens=words, budget=shared)
    assert caught.value.limit == len(unbounded) + 2
    assert shared.chunks == len(unbounded) + 3  # it stopped at the first chunk too many


def test_an_abandoned_budget_stops_chunking_before_any_token_is_counted() -> None:
    counted: list[str] = []

    def counting(text: str) -> int:
        counted.append(text)
        return words(text)

    budget = WorkBudget()
    budget.abandon()
    with pytest.raises(WorkAbandoned):
        chunk_text(PROSE, max_tokens=40, count_tokens=counting, budget=budget)
    assert counted == []


async def test_cancelling_the_waiting_task_stops_the_chunking_thread() -> None:
    """A worker thread cannot be cancelled: ``WorkBudget.run`` abandons the budget when
    its awaiting task is, and the chunker stops at its next token count."""
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    counted: list[str] = []
    outcome: list[str] = []

    def slow_count(text: str) -> int:
        counted.append(text)
        if len(counted) == 1:
            entered.set()
            release.wait()
        return words(text)

    budget = WorkBudget()

    def chunk() -> None:
        try:
            chunk_text(PROSE, max_tokens=40, count_tokens=slow_count, budget=budget)
            outcome.append("finished")
        except WorkAbandoned:
            outcome.append("abandoned")
        finally:
            finished.set()

    task = asyncio.create_task(budget.run(chunk))
    assert await asyncio.to_thread(entered.wait, 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await asyncio.to_thread(finished.wait, 60)
    assert outcome == ["abandoned"] and len(counted) == 1
