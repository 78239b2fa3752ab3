"""Adapters are found by name through the ``switchyard.adapters`` entry points."""

from __future__ import annotations

import httpx

from adapters.base import Capability, Resources, registered_adapters
from adapters.openai import OpenAIAdapter
from proxy.settings import settings_from_mapping


def test_openai_adapter_is_registered_by_name() -> None:
    adapters = registered_adapters()

    assert adapters["openai"] is OpenAIAdapter
    assert {Capability.CHAT, Capability.COMPLETIONS, Capability.EMBEDDINGS}.issubset(
        OpenAIAdapter.capabilities
    )


async def test_label_names_host_and_model_but_no_secret() -> None:
    settings = settings_from_mapping(
        {
            "models": [
                {
                    "name": "gpt",
                    "adapter": "openai",
                    "model": "gpt-4o-mini",
                    "base_url": "https://user:pw@api.example.com/v1/",
                    "api_key": "sk-secret",
                }
            ]
        }
    )
    async with httpx.AsyncClient() as http:
        adapter = OpenAIAdapter(settings.models[0], Resources(settings=settings, http=http))

    assert adapter.label == "openai:api.example.com/gpt-4o-mini"
    assert "sk-secret" not in adapter.label


async def test_an_openai_entry_can_declare_fewer_capabilities() -> None:
    settings = settings_from_mapping(
        {
            "models": [
                {
                    "name": "chat-only",
                    "adapter": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "capabilities": ["chat", "embeddings", "video"],
                }
            ]
        }
    )
    async with httpx.AsyncClient() as http:
        adapter = OpenAIAdapter(settings.models[0], Resources(settings=settings, http=http))
    # What the adapter cannot do at all (video) is not gained by declaring it.
    assert adapter.capabilities == {Capability.CHAT, Capability.EMBEDDINGS}
