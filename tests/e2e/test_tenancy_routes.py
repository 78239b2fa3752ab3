"""Tenancy beyond chat, through the real gateway: extension APIs follow
``allowed_extensions``, usage rows and per-team metrics follow identity, and a caller
that is refused is still accounted (as an error) without being counted twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.rag_fakes import embeddings_upstream
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenants import seed_keys

MASTER = "sk-tenancy-routes-master"
RAG_USER = "sk-tenancy-routes-rag"
NO_RAG = "sk-tenancy-routes-no-rag"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("tenancy-routes") / "data"
    seed_keys(
        data,
        {RAG_USER: "team_docs", NO_RAG: "team_plain"},
        teams={
            "team_plain": {"allowed_extensions": ["session"], "allowed_models": ["embed*"]},
            "team_docs": {"rpm_limit": 1000},
        },
    )
    with embeddings_upstream() as (_, url):
        model = {
            "name": "embed-small",
            "adapter": "openai",
            "model": "bag-of-words",
            "base_url": url,
            "api_key": "sk-upstream",
            "timeout_s": 10,
            "price": {"input_per_1m": 2.0, "output_per_1m": 0.0},
        }
        config: dict[str, Any] = {
            "server": {"master_key": MASTER, "data_dir": str(data)},
            "state": {"usage_flush_interval_s": 0.1},
            "defaults": False,
            "models": [model, {**model, "name": "smollm2-135m-embed"}],
            "rag": {"embedding_model": "embed-small"},
        }
        with serve_gateway(config) as running:
            yield running


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_an_extensions_own_api_is_403_for_a_team_without_it(gateway: RunningServer) -> None:
    rag = f"{gateway.url}/v1/switchyard/rag/collections"
    refused = httpx.get(rag, headers=headers(NO_RAG))
    assert refused.status_code == 403
    assert "'rag'" in refused.json()["error"]["message"]
    assert httpx.get(rag, headers=headers(RAG_USER)).status_code == 200
    sessions = f"{gateway.url}/v1/switchyard/sessions"
    assert httpx.get(sessions, headers=headers(NO_RAG)).status_code == 200


def test_usage_rows_and_team_metrics_follow_the_caller(gateway: RunningServer) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=RAG_USER, max_retries=0)
    made = client.embeddings.create(model="embed-small", input="tenancy counts tokens")
    assert made.usage.prompt_tokens > 0
    plain = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=NO_RAG, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        plain.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])

    rows = httpx.get(
        f"{gateway.url}/v1/switchyard/admin/usage/requests",
        params={"team_id": "team_docs"},
        headers=headers(MASTER),
    ).json()["data"]
    mine = [r for r in rows if r["model"] == "embed-small"]
    assert mine, rows
    row = mine[0]
    assert (row["team_id"], row["route"], row["status"]) == ("team_docs", "embeddings", 200)
    assert row["prompt_tokens"] == made.usage.prompt_tokens
    assert row["cost_usd"] == pytest.approx(made.usage.prompt_tokens * 2.0 / 1e6)
    assert "tenancy counts tokens" not in str(rows)  # never the prompt

    refused = httpx.get(
        f"{gateway.url}/v1/switchyard/admin/usage",
        params={"team_id": "team_plain", "group_by": "model"},
        headers=headers(MASTER),
    ).json()["data"]
    assert [(g["group"], g["requests"], g["errors"]) for g in refused] == [("other", 1, 1)]

    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'switchyard_team_requests_total{outcome="ok",team="team_docs"}' in metrics
    assert (
        'switchyard_limit_rejections_total{kind="model_not_found",team="team_plain"} 1.0' in metrics
    )
    prompt = made.usage.prompt_tokens
    assert f'switchyard_team_tokens_total{{kind="prompt",team="team_docs"}} {prompt}.0' in metrics


def test_a_forbidden_model_is_absent_from_the_list_and_404_by_id(gateway: RunningServer) -> None:
    listed = httpx.get(f"{gateway.url}/v1/models", headers=headers(NO_RAG)).json()["data"]
    assert [m["id"] for m in listed] == ["embed-small"]
    hidden = httpx.get(f"{gateway.url}/v1/models/smollm2-135m-embed", headers=headers(NO_RAG))
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"
    every = httpx.get(f"{gateway.url}/v1/models", headers=headers(MASTER)).json()["data"]
    assert {"embed-small", "smollm2-135m-embed"} <= {m["id"] for m in every}


def test_an_upgrade_keeps_the_sessions_of_the_old_sessions_database(tmp_path: Path) -> None:
    """A data dir from before the state layer: its sessions file is copied in at start-up,
    and each key reads its own conversations through the API as before."""
    import asyncio

    from proxy.keys import key_id
    from tests.support.legacy_session_store import SessionStore

    data = tmp_path / "data"
    data.mkdir()
    turns = [
        {"role": "user", "content": "before the upgrade"},
        {"role": "assistant", "content": "ok"},
    ]

    async def write_old() -> None:
        old = SessionStore(data / "sessions.sqlite3")
        await old.open()
        await old.append(key_id("sk-old-a"), "trip", turns)
        await old.append(key_id("sk-old-b"), "trip", turns[:1])
        await old.close()

    asyncio.run(write_old())
    config = {
        "server": {"api_keys": ["sk-old-a", "sk-old-b"], "data_dir": str(data)},
        "defaults": False,
    }
    for _restart in range(2):  # the second start imports nothing twice
        with serve_gateway(config) as running:
            url = f"{running.url}/v1/switchyard/sessions/trip"
            mine = httpx.get(url, headers=headers("sk-old-a")).json()
            theirs = httpx.get(url, headers=headers("sk-old-b")).json()
            assert (mine["message_count"], mine["messages"]) == (2, turns)
            assert (theirs["message_count"], theirs["messages"]) == (1, turns[:1])


def test_a_stream_the_client_left_is_still_charged(tmp_path: Path) -> None:
    """No usage chunk ever comes when the client leaves mid-stream: the row is a 499
    charged for the prompt (estimated) and a token per event sent, not free."""
    import time

    from tests.support.fake_openai import Fault, running_fake

    with running_fake({"dripper": Fault("drip", seconds=0.02)}) as (_, url):
        model = {
            "name": "drip",
            "adapter": "openai",
            "model": "dripper",
            "base_url": url,
            "timeout_s": 10,
            "price": {"input_per_1m": 1_000_000.0, "output_per_1m": 1_000_000.0},
        }
        config: dict[str, Any] = {
            "server": {"master_key": MASTER, "data_dir": str(tmp_path)},
            "state": {"usage_flush_interval_s": 0.1},
            "defaults": False,
            "models": [model],
        }
        with serve_gateway(config) as running:
            client = openai.OpenAI(base_url=f"{running.url}/v1", api_key=MASTER, max_retries=0)
            stream = client.chat.completions.create(
                model="drip", messages=[{"role": "user", "content": "count for me"}], stream=True
            )
            for received, _chunk in enumerate(stream, start=1):
                if received == 5:
                    break
            stream.close()
            rows: list[dict[str, Any]] = []
            for _ in range(50):
                rows = httpx.get(
                    f"{running.url}/v1/switchyard/admin/usage/requests",
                    params={"model": "drip"},
                    headers=headers(MASTER),
                ).json()["data"]
                if rows:
                    break
                time.sleep(0.1)
    (row,) = rows
    assert row["status"] == 499
    assert row["prompt_tokens"] >= 1
    assert 5 <= row["completion_tokens"] < 400  # the events that went out, not the 400
    assert row["cost_usd"] == pytest.approx(row["prompt_tokens"] + row["completion_tokens"])
