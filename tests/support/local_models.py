"""What the e2e modules on the real SmolLM2 model share: the tool definitions they offer
the model, and one gateway per module with an ``openai`` client for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import RunningServer, serve_gateway


def weather_tool(city_max_length: int = 24) -> dict[str, Any]:
    """A client tool with one bounded string argument (the bound keeps a small model's
    sampled city short)."""
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": city_max_length}},
                "required": ["city"],
            },
        },
    }


WEATHER = weather_tool()
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}},
            "required": ["zone"],
        },
    },
}


def openai_client(server: RunningServer, api_key: str = "unused") -> openai.OpenAI:
    """The official client for ``server``, without retries, patient with a CPU model."""
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0, timeout=120)


def post(server: RunningServer, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST ``body`` as JSON to ``/v1{path}`` of ``server``."""
    return httpx.post(f"{server.url}/v1{path}", json=body, timeout=60)


def module_gateway(
    config: dict[str, Any],
) -> tuple[Callable[[], Iterator[RunningServer]], Callable[[RunningServer], openai.OpenAI]]:
    """The module-scoped ``server`` and ``client`` fixtures for a gateway on ``config``:
    bind them as ``server, client = module_gateway(CONFIG)`` so that a module loads its
    models once."""

    @pytest.fixture(scope="module")
    def server() -> Iterator[RunningServer]:
        with serve_gateway(config) as running:
            yield running

    @pytest.fixture(scope="module")
    def client(server: RunningServer) -> openai.OpenAI:
        return openai_client(server)

    return server, client
