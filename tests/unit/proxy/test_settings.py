"""Configuration: typed, strict about unknown keys, secrets through ``env:``; and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.openai import OpenAIConfig
from proxy.cli import main
from proxy.settings import ConfigError, load_settings, settings_from_mapping


def openai_model(name: str = "gpt", **extra: Any) -> dict[str, Any]:
    return {"name": name, "adapter": "openai", **extra}


def test_defaults() -> None:
    settings = settings_from_mapping({})

    assert settings.server.host == "127.0.0.1"
    assert settings.server.api_keys == []
    assert settings.models == []


def test_model_entries_are_typed_by_their_adapter() -> None:
    settings = settings_from_mapping(
        {
            "models": [
                openai_model("gpt", model="gpt-4o-mini", base_url="http://a/v1", timeout_s=3),
                openai_model("gpt", base_url="http://b/v1"),
                openai_model("other", fallbacks=["gpt"]),
            ]
        }
    )

    first, second, other = settings.models
    assert isinstance(first, OpenAIConfig)
    assert first.upstream_model == "gpt-4o-mini"
    assert first.timeout_s == 3.0
    assert second.upstream_model == "gpt"  # defaults to the name
    assert other.fallbacks == ["gpt"]
    assert settings.model_names() == ["gpt", "other"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"server": {"bogus": 1}}, ["bogus", "server"]),
        ({"sever": {}}, ["sever"]),
        ({"http": {"pool": 3}}, ["pool", "http"]),
        ({"models": [openai_model(colour="blue")]}, ["colour", "models[0]"]),
        ({"models": [openai_model(), openai_model(timeout_s="slow")]}, ["models[1].timeout_s"]),
        ({"server": {"port": "eighty"}}, ["server.port"]),
    ],
)
def test_bad_keys_and_types_name_their_path(raw: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(raw, "switchyard.yaml")

    for fragment in expected:
        assert fragment in str(caught.value)


def test_env_indirection_resolves_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CLIENT_KEY", "sk-client")
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-upstream")

    settings = settings_from_mapping(
        {
            "server": {"api_keys": ["env:TEST_CLIENT_KEY", "literal"]},
            "models": [openai_model(api_key="env:TEST_UPSTREAM_KEY")],
        }
    )

    assert settings.server.api_keys == ["sk-client", "literal"]
    model = settings.models[0]
    assert isinstance(model, OpenAIConfig)
    assert model.api_key == "sk-upstream"


def test_env_indirection_to_a_missing_variable_names_path_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWITCHYARD_TEST_MISSING", raising=False)

    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"models": [openai_model(api_key="env:SWITCHYARD_TEST_MISSING")]})

    assert "models[0].api_key" in str(caught.value)
    assert "SWITCHYARD_TEST_MISSING" in str(caught.value)


def test_env_prefix_only_applies_to_whole_references() -> None:
    settings = settings_from_mapping({"models": [openai_model(api_key="not env:REALLY")]})

    assert settings.models[0].api_key == "not env:REALLY"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ([openai_model(fallbacks=["nowhere"])], "unknown model 'nowhere'"),
        ([{"name": "x", "adapter": "no-such-adapter"}], "unknown adapter 'no-such-adapter'"),
        ([{"name": "x"}], "models[0].adapter"),
        ([openai_model("a+b")], "models[0].name"),
        ([openai_model("  ")], "models[0].name"),
        (["just a string"], "models[0]"),
    ],
)
def test_invalid_models(models: list[Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"models": models})
    assert expected in str(caught.value)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError):
        settings_from_mapping(["models"])


def test_load_settings_reads_yaml_and_the_env_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("server: {port: 9999}\nmodels:\n  - {name: m, adapter: openai}\n")
    monkeypatch.setenv("SWITCHYARD_CONFIG", str(file))

    from_env = load_settings(None)
    explicit = load_settings(file)

    assert from_env.server.port == explicit.server.port == 9999
    assert from_env.source == str(file)
    assert [m.name for m in explicit.models] == ["m", *BUILTIN_NAMES]


BUILTIN_NAMES = ["smollm2-135m", "smollm2-135m-embed", "whisper-1", "tts-1"]


def test_a_file_keeps_the_builtin_models_and_may_replace_one_by_name(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("models:\n  - {name: tts-1, adapter: openai, base_url: 'http://tts:1/v1'}\n")

    settings = load_settings(file)

    assert [m.name for m in settings.models] == ["tts-1", *BUILTIN_NAMES[:3]]
    assert [m.adapter for m in settings.models] == ["openai", "llamacpp", "llamacpp", "whisper"]


def test_defaults_false_serves_only_the_file_s_models(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("defaults: false\nmodels:\n  - {name: m, adapter: openai}\n")

    assert [m.name for m in load_settings(file).models] == ["m"]


def test_fallbacks_may_name_a_builtin_model(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("models:\n  - {name: m, adapter: openai, fallbacks: [smollm2-135m]}\n")

    assert load_settings(file).models[0].fallbacks == ["smollm2-135m"]
    file.write_text("defaults: false\n" + file.read_text())
    with pytest.raises(ConfigError, match="unknown model 'smollm2-135m'"):
        load_settings(file)


def test_plugin_sections_are_validated_by_their_plugin_and_name_their_path() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"rag": {"top_k": 0}}, "s.yaml")
    assert str(caught.value).startswith("s.yaml: ")
    assert "rag.top_k" in str(caught.value)

    with pytest.raises(ConfigError, match=r"tools\.web_fetch"):
        settings_from_mapping({"tools": {"web_fetch": {"colour": 1}}})


def test_an_unknown_section_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"retrieval": {}})
    message = str(caught.value)
    assert "`retrieval`: unknown section" in message
    for known in ("server", "http", "models", "rag", "tools", "personas", "sessions", "local"):
        assert known in message


def test_a_section_absent_from_the_file_is_its_plugin_s_defaults() -> None:
    from extensions.rag.config import RagConfig

    settings = settings_from_mapping({"rag": {"top_k": 7}})

    assert settings.section("rag", RagConfig).top_k == 7
    assert settings_from_mapping({}).section("rag", RagConfig) == RagConfig()
    with pytest.raises(TypeError):
        settings.section("rag", OpenAIConfig)


def test_input_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from extensions.personas import PersonasConfig

    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    (config_dir / "model.gguf").write_bytes(b"")
    file = config_dir / "switchyard.yaml"
    file.write_text(
        "personas: {dir: personas}\n"
        "models:\n  - {name: local, adapter: llamacpp, path: model.gguf}\n"
    )
    monkeypatch.chdir(tmp_path)  # anywhere but the file's directory

    settings = load_settings(file)

    assert settings.models[0].path == str(config_dir / "model.gguf")  # type: ignore[attr-defined]
    assert settings.section("personas", PersonasConfig).dir == str(config_dir / "personas")


def test_load_settings_without_any_file_gives_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWITCHYARD_CONFIG", raising=False)

    settings = load_settings(None)

    assert settings.source == "<defaults>"
    assert settings.server.host == "127.0.0.1"


# ------------------------------------------------------------------------------ the CLI


def test_check_config_prints_the_routing_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-very-secret")
    file = tmp_path / "ok.yaml"
    file.write_text(
        "server: {api_keys: [k1]}\n"
        "models:\n"
        "  - {name: chat, adapter: openai, model: up-a, base_url: 'http://a:1/v1',"
        " api_key: 'env:TEST_UPSTREAM_KEY', fallbacks: [backup]}\n"
        "  - {name: chat, adapter: openai, model: up-b, base_url: 'http://b:2/v1'}\n"
        "  - {name: backup, adapter: openai}\n"
    )

    assert main(["check-config", str(file)]) == 0

    out = capsys.readouterr().out
    assert "model chat" in out
    assert "model backup" in out
    assert "up-a" in out
    assert "up-b" in out
    assert "fallbacks: backup" in out
    assert "1 static api key" in out
    assert "sk-very-secret" not in out  # secrets are never printed


def test_media_section_names_one_backend_and_its_defaults_come_from_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    default = settings_from_mapping({"server": {"media_retention_s": 60}})
    assert default.media.store.chosen()[0] == "dir"
    assert default.media.summary("d", default.server.media_retention_s) == "dir d/media; kept 60 s"
    assert default.media.stale_after_s == 15.0
    monkeypatch.setenv("TEST_S3_SECRET", "s3-very-secret")
    file = tmp_path / "s3.yaml"
    file.write_text(
        "media:\n"
        "  store: {s3: {bucket: b, endpoint_url: 'http://minio:9000', prefix: sy/,"
        " access_key_id: k, secret_access_key: 'env:TEST_S3_SECRET'}}\n"
        "  retention_s: 120\n"
    )
    assert main(["check-config", str(file)]) == 0
    out = capsys.readouterr().out
    assert "media: s3 s3://b/sy/ at http://minio:9000; kept 120 s" in out
    assert "s3-very-secret" not in out
    for bad, expected in [
        ({"store": {"dir": {}, "s3": {"bucket": "b"}}}, "name one backend"),
        ({"store": {"ftp": {}}}, "ftp"),
        ({"store": {"s3": {"bucket": "b", "prefix": "../x/"}}}, "prefix"),
        ({"job_heartbeat_s": 5, "job_stale_after_s": 2}, "longer than"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            settings_from_mapping({"media": bad})


def test_check_config_prints_plugin_sections_that_differ_from_their_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "ok.yaml"
    file.write_text("rag: {top_k: 9}\ntools: {}\n")

    assert main(["check-config", str(file)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert "section rag: top_k=9" in out
    assert "section tools: defaults" in out
    assert "model smollm2-135m" in out  # built-ins are kept


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("server: {bogus: 1}\n", "bogus"),
        ("models: [{name: m, adapter: openai, fallbacks: [x]}]\n", "unknown model 'x'"),
        ("server: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_check_config_rejects_bad_files_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(content)

    assert main(["check-config", str(file)]) == 1

    captured = capsys.readouterr()
    assert expected in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_check_config_on_a_missing_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_cli_requires_a_command() -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2


def test_health_settings() -> None:
    settings = settings_from_mapping(
        {
            "server": {"public_health_details": True, "health_window": 3},
            "models": [openai_model(required=True, health_probe_interval_s=15)],
        }
    )

    assert settings.server.public_health_details is True
    assert settings.server.health_window == 3
    assert settings.models[0].required is True
    assert settings.models[0].health_probe_interval_s == 15.0
    defaults = settings_from_mapping({"models": [openai_model()]})
    assert defaults.server.public_health_details is False
    assert defaults.models[0].required is False
    assert defaults.models[0].health_probe_interval_s is None


def test_a_probe_interval_needs_an_adapter_with_a_probe() -> None:
    local = {"name": "l", "adapter": "llamacpp", "path": "/x.gguf", "health_probe_interval_s": 5}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"models": [local]}, "conf.yaml")

    assert str(caught.value) == (
        "conf.yaml: models[0].health_probe_interval_s: the llamacpp adapter has no health probe"
    )
    with pytest.raises(ConfigError, match=r"models\[0\].health_probe_interval_s"):
        settings_from_mapping({"models": [openai_model(health_probe_interval_s=0)]})
    with pytest.raises(ConfigError, match="health_window"):
        settings_from_mapping({"server": {"health_window": 0}})


def test_an_unsupported_state_database_is_a_config_error_naming_the_forms(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_mapping({"state": {"database": "mysql://u:p@h/db"}}, "f.yaml")
    text = str(error.value)
    assert "state" in text and "sqlite:///" in text and "postgresql://" in text
    assert "u:p" not in text  # never the credentials


def test_check_config_shows_auth_and_state_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "server: {master_key: sk-master-secret, api_keys: [sk-static-secret]}\n"
        "state: {database: 'postgresql://u:pw-secret@db.internal/sy', redis_url: 'redis://r:6379/0'}\n"
        "rag: {chroma_url: 'http://chroma:8000'}\n"  # replicas on PostgreSQL need a server
    )
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "auth: master key, 1 static api key(s), virtual keys" in out
    assert "state: postgresql+asyncpg://u:***@db.internal/sy; limits counted redis" in out
    assert "secret" not in out


def test_telemetry_is_off_by_default_and_typed() -> None:
    assert settings_from_mapping({}).telemetry.otlp_endpoint is None
    telemetry = settings_from_mapping(
        {"telemetry": {"otlp_endpoint": "http://collector:4318", "sample_ratio": 0.25}}
    ).telemetry
    assert telemetry.traces_url == "http://collector:4318/v1/traces"
    assert (telemetry.service_name, telemetry.sample_ratio) == ("switchyard", 0.25)


@pytest.mark.parametrize(
    ("telemetry", "expected"),
    [
        ({"otlp_endpoint": "collector:4318"}, "otlp_endpoint must be an http:// or https:// URL"),
        ({"sample_ratio": 1.5}, "Expected `float` <= 1.0 - at `$.telemetry.sample_ratio`"),
        ({"endpoint": "http://x"}, "Object contains unknown field `endpoint` - at `$.telemetry`"),
    ],
)
def test_bad_telemetry_settings_are_refused(telemetry: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"telemetry": telemetry})
    assert expected.replace("$.", "") in str(caught.value)
