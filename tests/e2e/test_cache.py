"""The response cache, driven with the official ``openai`` package.

Every test runs on both engines: SQLite with the cache in process, and PostgreSQL with
the cache in Redis. The fake upstream gives every answer a new id, so an answer with
the id of an earlier one came from the cache; its recorded requests show whether the
upstream was asked at all. Its usage is in words: the prompt ``say: <text>`` is two
words plus the text's (``say:`` is one), the answer ``Hello! You said: say: <text>``
three more.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_openai import FakeOpenAI, Fault
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenancy import Admin, chat_model, sdk, tenancy_config

PRICE = {"input_per_1m": 1_000_000.0, "output_per_1m": 2_000_000.0}
"""$1 per prompt token and $2 per completion token: costs are whole dollars."""


@pytest.fixture
def gateway(engine: dict[str, Any], fake_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    models = [
        chat_model("cached", "upstream-cached", fake_url, cache={"ttl_s": 600}, price=PRICE),
        chat_model("plain", "upstream-plain", fake_url),
    ]
    config = tenancy_config(tmp_path, models, state=engine, defaults=False)
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def admin(gateway: RunningServer) -> Iterator[Admin]:
    with Admin(gateway) as client:
        yield client


@pytest.fixture
def team_keys(admin: Admin) -> tuple[str, str, str]:
    """Two keys of team A (with a budget) and one of team B."""
    a = admin.team("team-a", max_budget_usd=1000)
    b = admin.team("team-b")
    return admin.key(a["id"])["key"], admin.key(a["id"])["key"], admin.key(b["id"])["key"]


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"say: {text}"}]


def whole(client: openai.OpenAI, text: str, **kw: Any) -> tuple[Any, httpx.Headers]:
    raw = client.chat.completions.with_raw_response.create(
        model=kw.pop("model", "cached"), messages=messages(text), **kw
    )
    return raw.parse(), raw.headers


def streamed(client: openai.OpenAI, text: str, **kw: Any) -> tuple[list[Any], httpx.Headers]:
    raw = client.chat.completions.with_raw_response.create(
        model="cached", messages=messages(text), stream=True, **kw
    )
    return list(raw.parse()), raw.headers


def upstream_calls(fake: FakeOpenAI) -> int:
    return len(fake.received("/v1/chat/completions", model="upstream-cached"))


def test_a_whole_answer_is_cached_and_replayed_as_a_stream(
    gateway: RunningServer, fake: FakeOpenAI, team_keys: tuple[str, str, str]
) -> None:
    with sdk(gateway, team_keys[0]) as client:
        first, head = whole(client, "the cache")
        assert head["x-switchyard-cache"] == "miss"
        again, head = whole(client, "the cache")
        assert head["x-switchyard-cache"] == "hit"
        assert again.id == first.id and upstream_calls(fake) == 1
        assert again.choices[0].message.content == "Hello! You said: say: the cache"
        chunks, head = streamed(client, "the cache", stream_options={"include_usage": True})
    assert head["x-switchyard-cache"] == "hit" and upstream_calls(fake) == 1
    assert head["content-type"].startswith("text/event-stream")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! You said: say: the cache"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump() == first.usage.model_dump()
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (3, 6)


def test_a_streamed_answer_is_cached_and_served_whole(
    gateway: RunningServer, fake: FakeOpenAI, team_keys: tuple[str, str, str]
) -> None:
    with sdk(gateway, team_keys[0]) as client:
        chunks, head = streamed(client, "a stream")  # no usage asked for
        assert head["x-switchyard-cache"] == "miss"
        streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed_text == "Hello! You said: say: a stream"
        assert all(c.usage is None for c in chunks)
        answer, head = whole(client, "a stream")
        assert head["x-switchyard-cache"] == "hit" and upstream_calls(fake) == 1
        assert answer.id == chunks[0].id
        assert answer.choices[0].message.content == streamed_text
        assert answer.choices[0].finish_reason == "stop"
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 6)
        assert answer.usage.total_tokens == 9
        # And the stream again, from the cache, with its usage this time.
        again, head = streamed(client, "a stream", stream_options={"include_usage": True})
    assert head["x-switchyard-cache"] == "hit" and upstream_calls(fake) == 1
    assert again[-1].usage is not None and again[-1].usage.total_tokens == 9


def test_bypass_refresh_and_a_bad_header(
    gateway: RunningServer, fake: FakeOpenAI, team_keys: tuple[str, str, str]
) -> None:
    with sdk(gateway, team_keys[0]) as client:
        bypassed, head = whole(client, "x", extra_headers={"X-Switchyard-Cache": "bypass"})
        assert head["x-switchyard-cache"] == "bypass"
        first, head = whole(client, "x")
        assert head["x-switchyard-cache"] == "miss"  # the bypass stored nothing
        assert first.id != bypassed.id and upstream_calls(fake) == 2
        refreshed, head = whole(client, "x", extra_headers={"X-Switchyard-Cache": "refresh"})
        assert head["x-switchyard-cache"] == "miss" and upstream_calls(fake) == 3
        assert refreshed.id != first.id
        served, head = whole(client, "x", extra_headers={"X-Switchyard-Cache": "use"})
        assert head["x-switchyard-cache"] == "hit" and served.id == refreshed.id
        chunks, head = streamed(client, "x", extra_headers={"X-Switchyard-Cache": "bypass"})
        assert head["x-switchyard-cache"] == "bypass" and upstream_calls(fake) == 4
        assert chunks[0].id not in (first.id, refreshed.id)
        with pytest.raises(openai.BadRequestError) as refused:
            whole(client, "x", extra_headers={"X-Switchyard-Cache": "sometimes"})
        error = refused.value.body
        assert isinstance(error, dict) and error["param"] == "X-Switchyard-Cache"
        assert "X-Switchyard-Cache" in error["message"]
        plain, head = whole(client, "x", model="plain")
    assert "x-switchyard-cache" not in head  # a model without cache: no header
    assert plain.choices[0].message.content == "Hello! You said: say: x"


def test_teams_never_share_entries(
    gateway: RunningServer, fake: FakeOpenAI, team_keys: tuple[str, str, str]
) -> None:
    a1, a2, b = team_keys
    with sdk(gateway, a1) as first_a, sdk(gateway, a2) as second_a, sdk(gateway, b) as team_b:
        answer_a, head = whole(first_a, "shared words")
        assert head["x-switchyard-cache"] == "miss"
        answer_b, head = whole(team_b, "shared words")
        assert head["x-switchyard-cache"] == "miss" and answer_b.id != answer_a.id
        same_team, head = whole(second_a, "shared words")  # another key of team A
        assert head["x-switchyard-cache"] == "hit" and same_team.id == answer_a.id
        again_b, head = whole(team_b, "shared words")
    assert head["x-switchyard-cache"] == "hit" and again_b.id == answer_b.id
    assert upstream_calls(fake) == 2


def test_a_hit_costs_nothing_and_is_recorded_as_cached(
    gateway: RunningServer, admin: Admin, fake: FakeOpenAI, team_keys: tuple[str, str, str]
) -> None:
    key = team_keys[0]
    with sdk(gateway, key) as client:
        whole(client, "priced words")
        whole(client, "priced words")
        streamed(client, "priced words")
    me = httpx.get(
        f"{gateway.url}/v1/switchyard/me", headers={"Authorization": f"Bearer {key}"}
    ).json()
    # The miss: 3 prompt tokens at $1 and 6 completion tokens at $2; the hits: nothing.
    assert me["usage_this_period"]["cost_usd"] == pytest.approx(15.0)
    assert me["usage_this_period"]["requests"] == 3
    (budget,) = me["budget"].values()  # the team's
    assert budget["spent_usd"] == pytest.approx(15.0)
    rows = admin.http.get("/usage/requests", params={"model": "cached"}).json()["data"]
    assert sorted((r["cached"], r["cost_usd"], r["prompt_tokens"]) for r in rows) == [
        (False, 15.0, 3),
        (True, 0.0, 0),
        (True, 0.0, 0),
    ]
    totals = admin.usage(model="cached")
    assert (totals[0]["requests"], totals[0]["cached"]) == (3, 2)


def test_a_hit_still_counts_as_a_request_for_the_rpm_limit(
    gateway: RunningServer, admin: Admin, fake: FakeOpenAI
) -> None:
    key = admin.key(admin.team("limited")["id"], rpm_limit=2)["key"]
    with sdk(gateway, key) as client:
        assert whole(client, "limited")[1]["x-switchyard-cache"] == "miss"
        assert whole(client, "limited")[1]["x-switchyard-cache"] == "hit"
        with pytest.raises(openai.RateLimitError):
            whole(client, "limited")
    assert upstream_calls(fake) == 1


def test_errors_and_cut_streams_are_not_cached(
    gateway: RunningServer, fake: FakeOpenAI, team_keys: tuple[str, str, str]
) -> None:
    with sdk(gateway, team_keys[0]) as client:
        fake.faults["upstream-cached"] = Fault("status", status=400, times=1)
        with pytest.raises(openai.BadRequestError):
            whole(client, "fails once")
        answer, head = whole(client, "fails once")
        assert head["x-switchyard-cache"] == "miss"
        assert answer.choices[0].message.content == "Hello! You said: say: fails once"
        fake.faults["upstream-cached"] = Fault("truncate", after=2, times=1)
        with pytest.raises(openai.APIError):
            streamed(client, "cut short")
        answer, head = whole(client, "cut short")
    assert head["x-switchyard-cache"] == "miss"
    assert answer.choices[0].message.content == "Hello! You said: say: cut short"
    assert upstream_calls(fake) == 4


def test_completions_and_embeddings_are_cached(
    engine: dict[str, Any], fake: FakeOpenAI, fake_url: str, tmp_path: Path
) -> None:
    models = [chat_model("cached", "upstream-cached", fake_url, cache={"ttl_s": 600})]
    with serve_gateway(tenancy_config(tmp_path, models, state=engine, defaults=False)) as gw:
        with Admin(gw) as admin:
            key = admin.key(admin.team("t")["id"])["key"]
        with sdk(gw, key) as client:
            made = client.completions.with_raw_response.create(
                model="cached", prompt="once upon", max_tokens=5
            )
            assert made.headers["x-switchyard-cache"] == "miss"
            stream = client.completions.with_raw_response.create(
                model="cached", prompt="once upon", max_tokens=5, stream=True
            )
            assert stream.headers["x-switchyard-cache"] == "hit"
            text = "".join(c.choices[0].text for c in stream.parse() if c.choices)
            assert text == made.parse().choices[0].text == " and so on"
            vectors = [
                client.embeddings.with_raw_response.create(model="cached", input=["a", "b"])
                for _ in range(2)
            ]
    assert [v.headers["x-switchyard-cache"] for v in vectors] == ["miss", "hit"]
    assert vectors[0].parse().model_dump() == vectors[1].parse().model_dump()
    assert len(fake.received("/v1/completions")) == 1
    assert len(fake.received("/v1/embeddings")) == 1


def test_the_admin_api_reports_and_flushes_the_cache(
    gateway: RunningServer, admin: Admin, fake: FakeOpenAI, team_keys: tuple[str, str, str]
) -> None:
    a, _, b = team_keys
    with sdk(gateway, a) as team_a, sdk(gateway, b) as team_b:
        for text in ("one", "two", "one"):
            whole(team_a, text)
        whole(team_b, "one")
        stats = admin.http.get("/cache").json()
        assert (stats["enabled"], stats["entries"], stats["hits"], stats["misses"]) == (
            True,
            3,
            1,
            3,
        )
        (row,) = stats["data"]
        assert (row["model"], row["entries"], row["hit_rate"]) == ("cached", 3, 0.25)
        assert row["bytes"] > 3 * len("Hello! You said: say: one")
        team_b_id = admin.http.get("/teams").json()["data"]
        team_b_id = next(t["id"] for t in team_b_id if t["name"] == "team-b")
        flushed = admin.http.delete("/cache", params={"team": team_b_id}).json()
        assert flushed["removed"] == 1
        assert whole(team_a, "one")[1]["x-switchyard-cache"] == "hit"
        assert whole(team_b, "one")[1]["x-switchyard-cache"] == "miss"
        assert admin.http.delete("/cache", params={"model": "plain"}).json()["removed"] == 0
        assert admin.http.delete("/cache", params={"model": "cached"}).json()["removed"] == 3
        assert whole(team_a, "one")[1]["x-switchyard-cache"] == "miss"
    assert admin.http.get("/cache").json()["entries"] == 1
    audit = admin.http.get("/audit", params={"target": "cache"}).json()["data"]
    assert [(e["action"], e["actor"], e["details"]) for e in reversed(audit)] == [
        ("cache.flush", "master", {"removed": 1, "model": None, "team": team_b_id}),
        ("cache.flush", "master", {"removed": 0, "model": "plain", "team": None}),
        ("cache.flush", "master", {"removed": 3, "model": "cached", "team": None}),
    ]


def test_an_answer_cached_through_one_replica_is_a_hit_through_another(
    fake: FakeOpenAI,
    fake_url: str,
    tmp_path: Path,
    fresh_postgres_url: str,
    fresh_redis_url: str,
) -> None:
    state = {"database": fresh_postgres_url, "redis_url": fresh_redis_url}
    models = [chat_model("cached", "upstream-cached", fake_url, cache={"ttl_s": 600})]
    with (
        serve_gateway(tenancy_config(tmp_path / "a", models, state=state, defaults=False)) as a,
        serve_gateway(tenancy_config(tmp_path / "b", models, state=state, defaults=False)) as b,
    ):
        with Admin(a) as admin:
            key = admin.key(admin.team("t")["id"])["key"]
        with sdk(a, key) as through_a, sdk(b, key) as through_b:
            first, head = whole(through_a, "replicas")
            assert head["x-switchyard-cache"] == "miss"
            second, head = whole(through_b, "replicas")
            assert head["x-switchyard-cache"] == "hit" and second.id == first.id
            chunks, head = streamed(through_b, "replicas")
        assert head["x-switchyard-cache"] == "hit" and chunks[0].id == first.id
        with Admin(b) as admin:
            stats = admin.http.get("/cache").json()
    assert (stats["backend"], stats["entries"], stats["hits"], stats["misses"]) == (
        "redis",
        1,
        2,
        1,
    )
    assert upstream_calls(fake) == 1


def test_a_persona_answer_is_cached_under_its_own_key(
    fake: FakeOpenAI, fake_url: str, tmp_path: Path
) -> None:
    models = [chat_model("cached", "upstream-cached", fake_url, cache={"ttl_s": 600})]
    config = tenancy_config(tmp_path, models, defaults=False, personas={"default_model": "cached"})
    editor = {"X-Switchyard-Persona": "editor"}
    with serve_gateway(config) as gw:
        with Admin(gw) as admin:
            key = admin.key(admin.team("t")["id"])["key"]
        with sdk(gw, key) as client:
            first, head = whole(client, "me and him goes", extra_headers=editor)
            assert head["x-switchyard-cache"] == "miss"
            system = fake.last("/v1/chat/completions").body["messages"][0]
            assert system["role"] == "system"  # the persona's prompt reached the model
            again, head = whole(client, "me and him goes", extra_headers=editor)
            assert head["x-switchyard-cache"] == "hit" and again.id == first.id
            chunks, head = streamed(client, "me and him goes", extra_headers=editor)
            assert head["x-switchyard-cache"] == "hit" and chunks[0].id == first.id
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == first.choices[0].message.content
            plain, head = whole(client, "me and him goes")  # no persona: another question
    assert head["x-switchyard-cache"] == "miss" and plain.id != first.id
    assert upstream_calls(fake) == 2
