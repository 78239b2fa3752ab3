"""The adapter protocol: what a backend implements, and how adapters are found by name.

An adapter class declares its ``capabilities`` and its ``Config`` (a msgspec Struct
that validates the model entry), and implements only the methods of its capabilities.
One instance serves one deployment (one ``models:`` entry). Adapters are registered
through the ``switchyard.adapters`` entry-point group, so a third-party package adds
one by declaring an entry point; the core never branches on a provider name.

Return conventions, shared by every adapter:

- Non-streaming methods return a response Struct, or ``RawJSON`` when they already hold
  the encoded body (a remote upstream's bytes, forwarded without re-encoding).
- Streaming methods are async generators yielding ``ChatCompletionChunk`` /
  ``Completion`` Structs, or ``bytes`` that are already complete SSE events
  (``data: {...}\\n\\n``). They never yield ``[DONE]``: ``proxy.streaming`` ends the stream.
- Failures raise from ``proxy.errors``; before the first chunk the router may retry.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import msgspec

from proxy.cache.config import ModelCacheConfig
from proxy.errors import UnsupportedCapability

if TYPE_CHECKING:
    import httpx

    from adapters.transport import JsonTransport
    from proxy.media.jobs import JobReporter
    from proxy.media.outputs import GeneratedImages, VideoOutput
    from proxy.media.uploads import FormEnvelope
    from proxy.schemas.audio import (
        RawBody,
        SpeechRequest,
        TranscriptionRequest,
        TranslationRequest,
        VerboseTranscription,
    )
    from proxy.schemas.base import Envelope, NativeRequest
    from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
    from proxy.schemas.completions import Completion, CompletionRequest
    from proxy.schemas.embeddings import EmbeddingRequest, EmbeddingResponse
    from proxy.schemas.images import (
        ImageEditRequest,
        ImageGenerationRequest,
        ImageVariationRequest,
    )
    from proxy.schemas.rerank import RerankRequest, RerankResponse
    from proxy.schemas.tokenize import (
        DetokenizeRequest,
        DetokenizeResponse,
        TokenCountResponse,
        TokenizeRequest,
        TokenizeResponse,
    )
    from proxy.schemas.videos import VideoCreateRequest
    from proxy.settings import Settings


class Capability(enum.StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RERANK = "rerank"
    TOKENIZE = "tokenize"
    IMAGES = "images"
    VIDEO = "video"
    TRANSCRIPTION = "transcription"
    SPEECH = "speech"


class Price(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a deployment's tokens cost, in USD per million (for usage and budgets)."""

    input_per_1m: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    output_per_1m: Annotated[float, msgspec.Meta(ge=0)] = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


class DeploymentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields every ``models:`` entry has, whatever its adapter."""

    name: str
    """The model name clients send. Several entries may share it: they are deployments."""
    adapter: str
    """Registered adapter name (entry point in ``switchyard.adapters``)."""
    model: str | None = None
    """The backend's own model id; defaults to ``name``."""
    fallbacks: list[str] = []
    """Other model names to try, in order, when every deployment of this one fails."""
    required: bool = False
    """The process is ready (``/health/ready``) only while at least one deployment of this
    model can serve. One entry saying so makes the model name required. Models that are
    not required never take the process out of a load balancer's rotation."""
    health_probe_interval_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Seconds between active health checks of this deployment (for adapters that have
    a probe; ``openai`` asks ``GET {base_url}/models``), so its health is known without
    client traffic. ``null``: health comes from real requests only."""
    price: Price | None = None
    """USD per million input and output tokens; unset: free (local models)."""
    cache: ModelCacheConfig | None = None
    """Cache this model's answers per team (``{ttl_s: 3600}``, optionally ``semantic``);
    unset: never cached."""
    native: list[str] = []
    """Dialects this deployment's upstream speaks itself (``[responses]`` for OpenAI,
    ``[messages]`` for Anthropic): a request in one of them is passed through instead
    of translated into a chat request, when every deployment of the model says so. The
    adapter must support it (``Adapter.native_dialects``)."""

    @property
    def upstream_model(self) -> str:
        return self.model or self.name


class RawJSON(msgspec.Struct, frozen=True):
    """An encoded JSON response body, forwarded as is."""

    content: bytes


@dataclass(slots=True)
class CallStats:
    """Per-request accounting that adapters fill in and metrics and logs read."""

    upstream_s: float = 0.0
    first_token_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    deployment: str = ""
    attempts: int = 0

    def add_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


@dataclass(slots=True)
class Resources:
    """What the app lifespan owns and lends to adapters."""

    settings: Settings
    http: httpx.AsyncClient
    """The shared client, for everything off the hot path."""
    upstream: JsonTransport = None  # type: ignore[assignment]
    """JSON requests to remote models (chat, completions, embeddings); by default the
    shared client (tests fake it at httpx's transport layer)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.upstream is None:
            from adapters.transport import HttpxTransport

            self.upstream = HttpxTransport(self.http)


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A model an adapter runs in this process, for the local-model gauges."""

    name: str
    loaded: bool
    memory_bytes: int
    """Memory it holds (or would hold) when loaded, estimated."""
    queue_depth: int
    """Requests waiting for their turn on it."""
    expires_in_s: float | None = None
    """Seconds until it is unloaded for being idle, when loaded and that is known
    (``inf``: kept loaded); ``None``: unknown or not loaded."""


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What an adapter knows about the weights it serves, for the model listings of
    dialects that show them (Ollama's ``/api/tags`` and ``/api/show``); empty: unknown."""

    format: str = ""
    """The weights' file format (``gguf``)."""
    family: str = ""
    """The architecture (``llama``)."""
    parameter_size: str = ""
    """Human-readable parameter count (``135M``)."""
    quantization_level: str = ""
    """How the weights are stored (``Q8_0``, ``F16``)."""
    size_bytes: int = 0
    """The weights' size on disk."""
    modified_at: float | None = None
    """When the weights were last changed (Unix time)."""
    digest: str = ""
    """A SHA-256 hex digest identifying the weights."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The file's own scalar metadata (GGUF keys), as Ollama's ``model_info``."""
    template: str = ""
    """The chat template stored with the weights."""


class Adapter:
    """Base class for adapters; subclasses override the methods of their capabilities."""

    name: ClassVar[str]
    Config: ClassVar[type[DeploymentConfig]] = DeploymentConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: Stop a non-streaming call when its client disconnects. Worth a watcher task per
    #: request where the work is expensive and local (generation); remote calls skip it.
    cancel_on_disconnect: ClassVar[bool] = False
    #: ``readiness()`` reports a real check of the backend (a model file inspected, a
    #: server watched): a deployment that has served nothing yet is healthy, not unknown.
    readiness_is_checked: ClassVar[bool] = False
    #: The adapter holds its models in this process (weights in memory, a GPU), so a
    #: configuration using it cannot run as several worker processes: each would load a
    #: copy of its own (``proxy.replicas`` refuses it and shows the two-tier layout).
    holds_models_in_process: ClassVar[bool] = False
    #: Dialects (``proxy.dialects``) whose requests this adapter can pass through to its
    #: upstream unchanged (``native`` / ``native_stream``), when a deployment asks for it.
    native_dialects: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: DeploymentConfig, resources: Resources) -> None:
        self.config = config
        self.resources = resources

    @property
    def label(self) -> str:
        """A short, secret-free name for logs and metrics."""
        return f"{self.name}:{self.config.upstream_model}"

    async def start(self) -> None:
        """Called once from the app lifespan (a local adapter may preload here)."""

    async def aclose(self) -> None:
        """Release what the adapter holds."""

    @property
    def context_window(self) -> int | None:
        """Tokens the model can attend to, when the adapter knows (local models do)."""
        return None

    async def count_text_tokens(self, text: str) -> int | None:
        """Exact token count of ``text`` with the model's tokenizer, when there is one here."""
        return None

    def readiness(self) -> tuple[bool, str]:
        """Whether this deployment can serve, and why not."""
        return True, "ok"

    def local_models(self) -> list[LocalModel]:
        """The models this deployment runs in this process (read at each ``/metrics``
        scrape); a remote adapter runs none."""
        return []

    async def model_facts(self) -> ModelFacts | None:
        """What is known about the served weights (``None``: nothing, a remote model)."""
        return None

    async def load(self) -> bool:
        """Load the model now, when it runs in this process; whether there was one."""
        return False

    async def keep_alive(self, seconds: float | None) -> None:
        """How long the model stays loaded once idle, from now on: ``0`` unloads it as
        soon as no request holds it, ``inf`` keeps it, ``None`` restores the configured
        idle unload. Nothing to do for a model that does not run in this process."""

    async def probe(self) -> None:
        """Check actively that the backend answers; raise from ``proxy.errors`` when it
        does not. Run every ``health_probe_interval_s`` by the router; an adapter that
        has no cheap check keeps this default (and rejects that setting)."""
        raise NotImplementedError(f"the {self.name} adapter has no health probe")

    @classmethod
    def can_probe(cls) -> bool:
        """Whether the adapter implements ``probe``."""
        return cls.probe is not Adapter.probe

    def _unsupported(self, capability: Capability) -> UnsupportedCapability:
        return UnsupportedCapability(
            f"Model '{self.config.name}' ({self.name} adapter) does not support {capability}.",
            param="model",
        )

    async def chat(
        self, request: Envelope[ChatCompletionRequest], stats: CallStats
    ) -> ChatCompletion | RawJSON:
        raise self._unsupported(Capability.CHAT)

    def chat_stream(
        self, request: Envelope[ChatCompletionRequest], stats: CallStats
    ) -> AsyncIterator[ChatCompletionChunk | bytes]:
        raise self._unsupported(Capability.CHAT)

    async def complete(
        self, request: Envelope[CompletionRequest], stats: CallStats
    ) -> Completion | RawJSON:
        raise self._unsupported(Capability.COMPLETIONS)

    def complete_stream(
        self, request: Envelope[CompletionRequest], stats: CallStats
    ) -> AsyncIterator[Completion | bytes]:
        raise self._unsupported(Capability.COMPLETIONS)

    async def embed(
        self, request: Envelope[EmbeddingRequest], stats: CallStats
    ) -> EmbeddingResponse | RawJSON:
        raise self._unsupported(Capability.EMBEDDINGS)

    async def rerank(
        self, request: Envelope[RerankRequest], stats: CallStats
    ) -> RerankResponse | RawJSON:
        """Score ``documents`` against ``query`` (``/v1/rerank``). Adapters with
        ``Capability.RERANK`` override it; the default serves any adapter that embeds,
        by cosine similarity of embeddings (``proxy.rerank.rerank_by_embeddings``)."""
        if Capability.EMBEDDINGS not in self.capabilities:
            raise self._unsupported(Capability.RERANK)
        from proxy.rerank import rerank_by_embeddings

        return await rerank_by_embeddings(self, request, stats)

    async def tokenize(
        self, request: Envelope[TokenizeRequest], stats: CallStats
    ) -> TokenizeResponse | RawJSON:
        """Text, or chat messages as the model's template renders them, to token ids."""
        raise self._unsupported(Capability.TOKENIZE)

    async def detokenize(
        self, request: Envelope[DetokenizeRequest], stats: CallStats
    ) -> DetokenizeResponse | RawJSON:
        raise self._unsupported(Capability.TOKENIZE)

    async def count_tokens(
        self, request: Envelope[TokenizeRequest], stats: CallStats
    ) -> TokenCountResponse | RawJSON:
        """How many tokens ``tokenize`` would return, without the ids."""
        raise self._unsupported(Capability.TOKENIZE)

    async def native(
        self, dialect: str, request: Envelope[NativeRequest], stats: CallStats
    ) -> RawJSON:
        """A request in ``dialect``'s own wire format, passed to the upstream's own
        endpoint for it (see ``native_dialects``); the upstream's answer, as is."""
        raise self._unsupported(Capability.CHAT)

    def native_stream(
        self, dialect: str, request: Envelope[NativeRequest], stats: CallStats
    ) -> AsyncIterator[bytes]:
        """The streaming form of ``native``: the upstream's event stream, re-framed into
        complete events and otherwise unchanged."""
        raise self._unsupported(Capability.CHAT)

    async def native_count_tokens(
        self, dialect: str, request: Envelope[NativeRequest], stats: CallStats
    ) -> RawJSON:
        """``dialect``'s own token-count request (Messages' ``count_tokens``) passed to
        the upstream's own endpoint for it, as ``native`` passes a message request; the
        upstream's answer, as is."""
        raise self._unsupported(Capability.TOKENIZE)

    async def generate_images(
        self, request: Envelope[ImageGenerationRequest], stats: CallStats
    ) -> GeneratedImages | RawJSON:
        """Text to image. ``GeneratedImages`` are stored or encoded by the images route
        (``response_format``, ``output_format``); ``RawJSON`` is an upstream's answer."""
        raise self._unsupported(Capability.IMAGES)

    async def edit_images(
        self, request: FormEnvelope[ImageEditRequest], stats: CallStats
    ) -> GeneratedImages | RawJSON:
        """Image(s) + prompt (+ mask) to image; same return convention as ``generate_images``."""
        raise self._unsupported(Capability.IMAGES)

    async def image_variations(
        self, request: FormEnvelope[ImageVariationRequest], stats: CallStats
    ) -> GeneratedImages | RawJSON:
        raise self._unsupported(Capability.IMAGES)

    async def create_video(
        self, request: FormEnvelope[VideoCreateRequest], job: JobReporter, stats: CallStats
    ) -> VideoOutput:
        """Run one video job to the end (it runs as a background task): call
        ``job.accept()`` once the engine took it, report progress, store the file."""
        raise self._unsupported(Capability.VIDEO)

    async def transcribe(
        self, request: FormEnvelope[TranscriptionRequest], stats: CallStats
    ) -> VerboseTranscription | RawJSON | RawBody:
        """Speech to text. A ``VerboseTranscription`` is rendered by the route into the
        requested ``response_format``; ``RawJSON`` / ``RawBody`` are already in it."""
        raise self._unsupported(Capability.TRANSCRIPTION)

    async def translate(
        self, request: FormEnvelope[TranslationRequest], stats: CallStats
    ) -> VerboseTranscription | RawJSON | RawBody:
        """Speech in any language to English text; same return convention as ``transcribe``."""
        raise self._unsupported(Capability.TRANSCRIPTION)

    def speech(self, request: Envelope[SpeechRequest], stats: CallStats) -> AsyncIterator[bytes]:
        """Text to speech: yields the encoded audio in ``response_format`` as it is produced."""
        raise self._unsupported(Capability.SPEECH)


ENTRY_POINT_GROUP = "switchyard.adapters"

AdapterFactory = Callable[[DeploymentConfig, Resources], Adapter]


class AdapterRegistry(Mapping[str, type[Adapter]]):
    """Installed adapters by name; a class is imported only when it is looked up.

    Loading lazily means a broken or heavy third-party adapter costs nothing, and breaks
    nothing, for configurations that do not use it.
    """

    def __init__(self) -> None:
        self._entries = {e.name: e for e in entry_points(group=ENTRY_POINT_GROUP)}
        self._loaded: dict[str, type[Adapter]] = {}

    def __getitem__(self, name: str) -> type[Adapter]:
        if name not in self._loaded:
            self._loaded[name] = self._entries[name].load()
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def registered_adapters() -> AdapterRegistry:
    """Every adapter installed, by its registered name."""
    return AdapterRegistry()
