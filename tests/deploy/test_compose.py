"""deploy/compose.yaml, checked offline (Docker cannot run here): the compose-spec schema,
the services and how they are wired, and the replicas' config through the real
``switchyard check-config``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import CheckConfig
from tests.support.fake_openai import running_fake
from tests.support.servers import ROOT, serve_gateway
from tests.support.tenancy import chat_model

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
REPLICAS = ("switchyard-1", "switchyard-2")
#: What a user exports before ``docker compose up`` (the file requires the first two).
USER_ENV = {
    "SWITCHYARD_MASTER_KEY": "sk-compose-master",
    "POSTGRES_PASSWORD": "pg-secret",
    "OPENAI_API_KEY": "sk-provider",
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        if op and op.endswith("?"):
            raise AssertionError(f"compose would refuse to start: {arg}")
        return arg or ""

    return _VARIABLE.sub(one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _config_mount(service: dict[str, Any]) -> tuple[Path, str]:
    """The repo file mounted where ``switchyard serve --config`` reads, and that path."""
    command = service["command"]
    target = command[command.index("--config") + 1]
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return (COMPOSE.parent / source).resolve(), target
    raise AssertionError(f"nothing is mounted at {target}")


def test_compose_file_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    jsonschema.validate(compose, _schema())
    broken = {**compose, "services": {**compose["services"], "redis": {"image": 7}}}
    with pytest.raises(jsonschema.ValidationError):  # the schema is really applied
        jsonschema.validate(broken, _schema())


def test_two_replicas_nginx_postgres_redis_and_chroma(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*REPLICAS, "nginx", "postgres", "redis", "chroma"}
    first, second = (services[name] for name in REPLICAS)
    assert first == second  # the same replica twice, from one anchor
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
    assert set(services["nginx"]["depends_on"]) == set(REPLICAS)
    assert set(first["depends_on"]) == {"postgres", "redis", "chroma"}


def test_the_replicas_config_passes_check_config_and_wires_the_services(
    compose: dict[str, Any], check_config: CheckConfig, tmp_path: Path
) -> None:
    services = compose["services"]
    replica = services["switchyard-1"]
    config_file, target = _config_mount(replica)
    assert config_file.is_file() and config_file.is_relative_to(ROOT)
    assert any(v.endswith(f":{target}:ro") for v in replica["volumes"])  # mounted read-only
    env = {k: interpolate(v, USER_ENV) for k, v in replica["environment"].items()}

    result = check_config(config_file, env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "listen: 0.0.0.0:8080" in result.stdout
    assert "postgresql+asyncpg://switchyard:***@postgres:5432/switchyard" in result.stdout
    assert "limits counted redis" in result.stdout

    config = yaml.safe_load(config_file.read_text())
    server = config["server"]
    assert server["host"] == "0.0.0.0" and server["trust_forwarded_headers"] is True
    assert server["master_key"] == "env:SWITCHYARD_MASTER_KEY"  # never in the file
    assert "SWITCHYARD_MASTER_KEY" in replica["environment"]
    # Ports: the config's, what the replica exposes, what nginx proxies to.
    assert [str(server["port"])] == replica["expose"]
    # State in the services of this file, by their service names.
    database = urlsplit(env[config["state"]["database"].removeprefix("env:")])
    assert (database.scheme, database.hostname, database.port) == ("postgresql", "postgres", 5432)
    postgres = services["postgres"]["environment"]
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == interpolate(postgres["POSTGRES_PASSWORD"], USER_ENV)
    assert database.path == f"/{postgres['POSTGRES_DB']}"
    redis = urlsplit(env[config["state"]["redis_url"].removeprefix("env:")])
    assert (redis.scheme, redis.hostname) == ("redis", "redis")
    chroma = urlsplit(config["rag"]["chroma_url"])
    assert chroma.hostname == "chroma" and [str(chroma.port)] == services["chroma"]["expose"]
    # Media on one named volume that every replica mounts at server.data_dir.
    media = [v for v in replica["volumes"] if v.split(":")[1] == server["data_dir"]]
    assert len(media) == 1 and media[0].split(":")[0] in compose["volumes"]


def test_without_the_master_key_compose_refuses_to_start(compose: dict[str, Any]) -> None:
    environment = compose["services"]["switchyard-1"]["environment"]
    with pytest.raises(AssertionError, match="set SWITCHYARD_MASTER_KEY"):
        interpolate(environment["SWITCHYARD_MASTER_KEY"], {})


def test_nginx_proxies_to_both_replicas_on_their_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nginx = services["nginx"]
    mounted = {
        (COMPOSE.parent / v.split(":")[0]).resolve(): v.split(":")[1] for v in nginx["volumes"]
    }
    assert mounted[DEPLOY / "nginx.conf"].startswith("/etc/nginx/conf.d/")
    text = (DEPLOY / "nginx.conf").read_text()
    port = services["switchyard-1"]["expose"][0]
    assert re.findall(r"^\s*server\s+([\w-]+):(\d+)", text, re.MULTILINE) == [
        (name, port) for name in REPLICAS
    ]
    (listen,) = re.findall(r"^\s*listen\s+(\d+);", text, re.MULTILINE)
    (published,) = nginx["ports"]
    assert published.rsplit(":", 1)[1] == listen
    assert published.startswith("127.0.0.1:")  # published deliberately, not on every interface


def _healthcheck_script(service: dict[str, Any]) -> tuple[str, str]:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    (url,) = re.findall(r"http://127\.0\.0\.1:\d+/[\w/]+", test[3])
    return test[3], url


def test_the_replicas_healthcheck_runs_against_a_real_gateway(compose: dict[str, Any]) -> None:
    """The healthcheck's own command, pointed at a live gateway's port: it passes while the
    gateway is ready and fails once nothing listens there."""
    replica = compose["services"]["switchyard-1"]
    script, url = _healthcheck_script(replica)
    assert urlsplit(url).path == "/health/ready"
    assert str(urlsplit(url).port) == replica["expose"][0]
    with running_fake() as (_, fake_url):
        models = [chat_model("m", "upstream-m", fake_url)]
        with serve_gateway({"defaults": False, "models": models}) as gateway:
            live = script.replace(url, f"{gateway.url}/health/ready")
            assert subprocess.run([sys.executable, "-c", live], timeout=30).returncode == 0
    assert subprocess.run([sys.executable, "-c", live], timeout=30).returncode != 0
