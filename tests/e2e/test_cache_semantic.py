"""The semantic cache with a real embedding model: the built-in ``smollm2-135m-embed``
(llama.cpp), called through the gateway's own router.

Whether two questions are near enough is the model's call, so the test asks the same
model, through ``/v1/embeddings``, for the similarity it expects: the cache must hit
exactly when that similarity reaches the threshold, and say it in the header. What
the model's similarities are worth is measured by bench/semantic_cache.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from proxy.settings import DEFAULT_MODELS
from tests.e2e.test_cache import upstream_calls, whole
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import serve_gateway
from tests.support.tenancy import Admin, chat_model, sdk, tenancy_config

THRESHOLD = 0.97
EMBEDDER = "smollm2-135m-embed"


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_a_near_duplicate_question_gets_the_cached_answer_with_its_similarity(
    fake: FakeOpenAI, fake_url: str, tmp_path: Path
) -> None:
    semantic = {"embedding_model": EMBEDDER, "threshold": THRESHOLD}
    cache = {"ttl_s": 600, "semantic": semantic}
    builtin = next(m for m in DEFAULT_MODELS if m["name"] == EMBEDDER)
    models = [chat_model("cached", "upstream-cached", fake_url, cache=cache), dict(builtin)]
    first_q, near_q, other_q = (
        "what is the capital of France?",
        "What is the capital of France",
        "Give me a recipe for pancakes.",
    )
    with serve_gateway(tenancy_config(tmp_path, models)) as gw:
        with Admin(gw) as admin:
            team = admin.team("t")["id"]
            key, other_team_key = admin.key(team)["key"], admin.key(admin.team("u")["id"])["key"]
        with sdk(gw, key) as client, sdk(gw, other_team_key) as other_team:
            vectors = [
                e.embedding
                for e in client.embeddings.create(
                    model=EMBEDDER, input=[f"say: {q}" for q in (first_q, near_q, other_q)]
                ).data
            ]
            near_similarity = cosine(vectors[0], vectors[1])
            other_similarity = cosine(vectors[0], vectors[2])
            assert near_similarity >= THRESHOLD  # the premise of the test
            first, head = whole(client, first_q)
            assert head["x-switchyard-cache"] == "miss"
            near, head = whole(client, near_q)
            assert head["x-switchyard-cache"] == "hit" and near.id == first.id
            assert float(head["x-switchyard-cache-similarity"]) == pytest.approx(
                near_similarity, abs=2e-4
            )
            other, head = whole(client, other_q)
            expected = "hit" if other_similarity >= THRESHOLD else "miss"
            assert head["x-switchyard-cache"] == expected
            assert (other.id == first.id) == (expected == "hit")
            # Other parameters make another question, however near the words.
            hotter, head = whole(client, near_q, temperature=1.5)
            assert head["x-switchyard-cache"] == "miss" and hotter.id != first.id
            # Another team never gets this team's answers, near or exact.
            elsewhere, head = whole(other_team, near_q)
            assert head["x-switchyard-cache"] == "miss" and elsewhere.id != first.id
            exact, head = whole(client, first_q)
    assert head["x-switchyard-cache"] == "hit" and exact.id == first.id
    assert "x-switchyard-cache-similarity" not in head
    assert upstream_calls(fake) == (4 if expected == "miss" else 3)
