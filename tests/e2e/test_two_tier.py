"""The two-tier layout: one engine owning the local models, a gateway reaching it through
the ``openai`` adapter (what ``--workers > 1`` with local models is told to run instead).

The engine is a real Switchyard with the built-in models (SmolLM2 through llama.cpp);
the gateway is remote-only (``defaults: false``), its entries pointing at the engine
with the engine's key. The official ``openai`` package drives the gateway; the engine's
own metrics show that it served every answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from proxy.cli import main
from proxy.settings import DEFAULT_MODELS, settings_from_mapping, with_builtin_models
from tests.e2e.conftest import CLIENT_KEY
from tests.support.servers import RunningServer, serve_gateway

ENGINE_KEY = "sk-engine-for-the-gateways"
ASK = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("engine")
    raw = with_builtin_models({"server": {"api_keys": [ENGINE_KEY], "data_dir": str(data)}})
    # One thread per model on a shared test machine; otherwise the built-ins as shipped.
    raw["models"] = [
        {**m, "n_threads": 1} if m["adapter"] == "llamacpp" else m for m in raw["models"]
    ]
    with serve_gateway(settings_from_mapping(raw, "<engine>")) as running:
        yield running


def gateway_config(engine: RunningServer, data: Path) -> dict[str, object]:
    entries = [
        {
            "name": m["name"],
            "adapter": "openai",
            "base_url": f"{engine.url}/v1",
            "api_key": ENGINE_KEY,
        }
        for m in DEFAULT_MODELS
    ]
    return {
        "server": {"api_keys": [CLIENT_KEY], "data_dir": str(data)},
        "defaults": False,
        "rag": {"chroma_url": "http://chroma.invalid:8000"},
        "models": entries,
    }


@pytest.fixture(scope="module")
def gateway(
    engine: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    config = gateway_config(engine, tmp_path_factory.mktemp("gateway"))
    with serve_gateway(config) as running:
        yield running


def client_of(server: RunningServer, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)


def served_by_engine(engine: RunningServer, model: str, route: str) -> float:
    text = httpx.get(f"{engine.url}/metrics").text
    series = f'model="{re.escape(model)}",route="{re.escape(route)}",status="200"'
    pattern = r"^switchyard_requests_total\{" + series + r"\} (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_the_gateway_config_may_run_with_workers(engine: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(json.dumps(gateway_config(engine, tmp_path)), encoding="utf-8")
    assert main(["check-config", str(file), "--workers", "4"]) == 0


def test_chat_whole_and_streamed_through_the_gateway_are_answered_by_the_engine(
    engine: RunningServer, gateway: RunningServer
) -> None:
    before = served_by_engine(engine, "smollm2-135m", "chat")
    with client_of(gateway) as client:
        whole = client.chat.completions.create(
            model="smollm2-135m",
            messages=ASK,  # type: ignore[arg-type]
            max_tokens=12,
            temperature=0,
        )
        pieces = []
        usage = None
        for chunk in client.chat.completions.create(
            model="smollm2-135m",
            messages=ASK,  # type: ignore[arg-type]
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
    assert whole.choices[0].message.content
    # Greedy decoding on one engine: the stream says what the whole answer said.
    assert "".join(pieces) == whole.choices[0].message.content
    assert whole.usage is not None and usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens > 0
    assert served_by_engine(engine, "smollm2-135m", "chat") == before + 2


def test_embeddings_through_the_gateway_are_the_engine_s(
    engine: RunningServer, gateway: RunningServer
) -> None:
    before = served_by_engine(engine, "smollm2-135m-embed", "embeddings")
    with client_of(gateway) as client:
        through = client.embeddings.create(model="smollm2-135m-embed", input="two tiers")
    with client_of(engine, ENGINE_KEY) as direct:
        own = direct.embeddings.create(model="smollm2-135m-embed", input="two tiers")
    assert through.data[0].embedding == own.data[0].embedding
    assert len(through.data[0].embedding) > 100
    assert served_by_engine(engine, "smollm2-135m-embed", "embeddings") == before + 2
