"""The configuration files shipped in deploy/ and every config block of the README load,
and name what they promise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from proxy.cli import main
from proxy.settings import (
    ConfigError,
    load_settings,
    settings_from_mapping,
    with_builtin_models,
)

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
NOT_A_CONFIG = "<!-- not a switchyard config -->"
SECRETS = (
    "SWITCHYARD_API_KEY",
    "SWITCHYARD_MASTER_KEY",
    "SWITCHYARD_ENGINE_KEY",
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "ANTHROPIC_API_KEY",
    "COLLECTOR_KEY",
)
URLS = {
    "SWITCHYARD_DATABASE_URL": "postgresql://switchyard:secret@postgres:5432/switchyard",
    "SWITCHYARD_REDIS_URL": "redis://redis:6379/0",
}
"""Variables the shipped configs read that must be well-formed URLs."""


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.setenv(name, f"test-{name.lower()}")
    for name, value in URLS.items():
        monkeypatch.setenv(name, value)


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


def test_comfyui_example_config_loads_from_any_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # its workflow paths are relative to the file itself
    settings = load_settings(DEPLOY / "comfyui" / "switchyard.comfyui.yaml")
    comfy = [m for m in settings.models if m.adapter == "comfyui"]
    assert [m.name for m in comfy] == ["sd15", "svd", "wan-t2v"]
    assert main(["check-config", str(DEPLOY / "comfyui" / "switchyard.comfyui.yaml")]) == 0


def _readme_config_blocks() -> list[tuple[int, str]]:
    """Every fenced yaml block of the README but those marked as another tool's file."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"```yaml\n(.*?)```", text, re.S):
        before = text[: match.start()].rstrip().splitlines()[-1:]
        if before != [NOT_A_CONFIG]:
            blocks.append((text[: match.start()].count("\n") + 1, match.group(1)))
    return blocks


def test_the_readme_has_config_blocks_to_check() -> None:
    assert len(_readme_config_blocks()) >= 4


@pytest.mark.parametrize(("line", "block"), _readme_config_blocks())
def test_every_readme_config_block_passes_check_config(
    secrets: None, line: int, block: str
) -> None:
    """As check-config reads a file saved in the repository root (built-ins included)."""
    raw = yaml.safe_load(block)
    settings_from_mapping(with_builtin_models(raw), f"README.md:{line}", REPO)


@pytest.mark.parametrize(
    "config", sorted(p for p in DEPLOY.rglob("*.yaml") if p.name.startswith("switchyard"))
)
def test_every_shipped_config_passes_check_config(
    secrets: None, config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check-config", str(config)]) == 0


def test_the_example_config_s_personas_and_rag_find_their_models(secrets: None) -> None:
    names = set(load_settings(DEPLOY / "switchyard.example.yaml").model_names())
    assert {"smollm2-135m", "smollm2-135m-embed"} <= names


def test_check_config_prints_the_routing_table(
    secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(DEPLOY / "switchyard.example.yaml")]) == 0
    out = capsys.readouterr().out
    assert "model gpt-4o-mini" in out
    assert "fallbacks: llama-local" in out
    assert "test-openai_api_key" not in out  # secrets are never printed
