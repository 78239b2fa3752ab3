"""The ``anthropic`` adapter's config: defaults, the key from the environment, and the
dialects it may pass through."""

from __future__ import annotations

import pytest

from adapters.anthropic import AnthropicConfig
from proxy.settings import ConfigError, settings_from_mapping


def entry(**extra: object) -> dict[str, object]:
    return {"name": "claude", "adapter": "anthropic", "model": "claude-sonnet-4-5", **extra}


def test_defaults() -> None:
    config = settings_from_mapping({"models": [entry()]}).models[0]

    assert isinstance(config, AnthropicConfig)
    assert config.base_url == "https://api.anthropic.com"
    assert config.anthropic_version == "2023-06-01"
    assert config.default_max_tokens == 4096
    assert (config.api_key, config.native) == (None, [])


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")

    config = settings_from_mapping({"models": [entry(api_key="env:ANTHROPIC_API_KEY")]}).models[0]

    assert config.api_key == "sk-ant-from-env"  # type: ignore[attr-defined]


def test_messages_may_be_passed_through_and_nothing_else() -> None:
    config = settings_from_mapping({"models": [entry(native=["messages"])]}).models[0]
    assert config.native == ["messages"]

    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"models": [entry(native=["responses"])]})

    assert str(caught.value) == (
        "<mapping>: models[0].native: the anthropic adapter cannot pass 'responses' "
        "requests through (it can: messages)"
    )


def test_a_health_probe_may_be_configured() -> None:
    config = settings_from_mapping({"models": [entry(health_probe_interval_s=30)]}).models[0]

    assert config.health_probe_interval_s == 30


def test_default_max_tokens_must_be_positive() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"models": [entry(default_max_tokens=0)]})

    assert "default_max_tokens" in str(caught.value)
