"""The configuration files shipped in deploy/ load, and name what they promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import main
from proxy.settings import ConfigError, load_settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SECRETS = ("SWITCHYARD_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY")


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.setenv(name, f"test-{name.lower()}")


def test_example_config_loads_with_its_secrets_from_the_environment(secrets: None) -> None:
    settings = load_settings(DEPLOY / "switchyard.example.yaml")
    assert settings.server.host == "127.0.0.1"
    assert settings.server.api_keys == ["test-switchyard_api_key"]
    assert [m.name for m in settings.models].count("gpt-4o-mini") == 2
    assert settings.models[0].fallbacks == ["llama-local"]


def test_example_config_without_its_secrets_names_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="SWITCHYARD_API_KEY is not set"):
        load_settings(DEPLOY / "switchyard.example.yaml")


def test_comfyui_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DEPLOY.parent)  # its workflow paths are relative to the repository
    settings = load_settings(DEPLOY / "comfyui" / "switchyard.comfyui.yaml")
    assert {m.adapter for m in settings.models} == {"comfyui"}


def test_check_config_prints_the_routing_table(
    secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(DEPLOY / "switchyard.example.yaml")]) == 0
    out = capsys.readouterr().out
    assert "model gpt-4o-mini" in out
    assert "fallbacks: llama-local" in out
    assert "test-openai_api_key" not in out  # secrets are never printed
