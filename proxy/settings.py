"""Typed configuration: one YAML file, decoded into msgspec Structs.

Unknown keys are errors that name their path. Strings of the form ``env:NAME`` are
replaced by that environment variable, so secrets never live in the file. Each model
entry is validated by its adapter's own ``Config`` Struct, found by adapter name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from adapters.base import Adapter, DeploymentConfig, registered_adapters

CONFIG_ENV = "SWITCHYARD_CONFIG"


class ConfigError(Exception):
    """A configuration file that cannot run; the message says where and why."""


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    """Interface to bind. Loopback by default; put a reverse proxy in front for a team."""
    port: int = 8080
    api_keys: list[str] = []
    """Keys accepted on /v1/* (Bearer or ``api-key`` header). Empty: no authentication."""
    max_body_mb: float = 25.0
    """Largest request body accepted, in MiB; larger gets 413."""
    protect_metrics: bool = False
    """Require an API key on /metrics too."""
    log_prompts: bool = False
    """Debug only: include prompt text in request logs. Off by default."""
    cooldown_s: float = 5.0
    """How long a failing deployment is skipped before it is tried again."""
    max_retry_after_s: float = 60.0
    """Upper bound on an upstream's Retry-After when it sets a cooldown."""
    data_dir: str = "./data"
    """Where Switchyard keeps what it creates (media, sessions, vector store)."""


class HttpConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The shared upstream HTTP client."""

    max_connections: int = 512
    max_keepalive_connections: int = 256
    keepalive_expiry_s: float = 30.0
    connect_timeout_s: float = 10.0
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """Connection engine under httpx: aiohttp's pool (faster under load) or httpx's own."""


class _FileConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    models: list[dict[str, Any]] = []


class Settings(msgspec.Struct, kw_only=True):
    server: ServerConfig
    http: HttpConfig
    models: list[DeploymentConfig]
    source: str = "<defaults>"

    def model_names(self) -> list[str]:
        """Configured names in file order, each once."""
        return list(dict.fromkeys(m.name for m in self.models))


_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")


def _resolve_env(node: Any, path: str) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_env(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_env(v, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and (match := _ENV_REF.match(node)):
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return os.environ[name]
    return node


def _located(error: msgspec.ValidationError, where: str) -> str:
    """msgspec's message with its ``$`` root replaced by the config path ``where``."""
    root = f"`{where}." if where else "`"
    text = str(error).replace("`$.", root).replace("`$`", f"`{where or 'top level'}`")
    return text if " - at `" in text or not where else f"{text} - at `{where}`"


def _model_entry(
    entry: dict[str, Any], index: int, adapters: dict[str, type[Adapter]]
) -> DeploymentConfig:
    where = f"models[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping")
    adapter_name = entry.get("adapter")
    if not isinstance(adapter_name, str):
        raise ConfigError(f"{where}.adapter: required (one of {', '.join(sorted(adapters))})")
    adapter_cls = adapters.get(adapter_name)
    if adapter_cls is None:
        raise ConfigError(
            f"{where}.adapter: unknown adapter '{adapter_name}' "
            f"(installed: {', '.join(sorted(adapters))})"
        )
    try:
        return msgspec.convert(entry, adapter_cls.Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_located(exc, where)) from None


def settings_from_mapping(raw: Any, source: str = "<mapping>") -> Settings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    raw = _resolve_env(raw, "")
    try:
        file_config = msgspec.convert(raw, _FileConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_located(exc, '')}") from None
    adapters = registered_adapters()
    models = [_model_entry(e, i, adapters) for i, e in enumerate(file_config.models)]
    names = {m.name for m in models}
    for index, model in enumerate(models):
        if not model.name.strip():
            raise ConfigError(f"models[{index}].name: must not be empty")
        if "+" in model.name:
            raise ConfigError(f"models[{index}].name: '+' is reserved for extension suffixes")
        for fallback in model.fallbacks:
            if fallback not in names:
                raise ConfigError(f"models[{index}].fallbacks: unknown model '{fallback}'")
    return Settings(server=file_config.server, http=file_config.http, models=models, source=source)


def load_settings(path: str | os.PathLike[str] | None) -> Settings:
    """Load the file at ``path`` (or ``$SWITCHYARD_CONFIG``); with neither, the defaults."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if not chosen:
        return settings_from_mapping({}, "<defaults>")
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return settings_from_mapping(raw, str(file))
