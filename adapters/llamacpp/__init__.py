"""In-process GGUF models on llama.cpp (llama-cpp-python): chat, completions, embeddings,
reranking.

One adapter instance per ``models:`` entry. The heavy state lives elsewhere:
``models.ModelManager`` (shared by all entries of an app) loads, evicts and unloads;
each loaded model has one worker thread and one FIFO queue (``scheduler``); the
request types are in ``chat``, ``completions``, ``embeddings`` and ``tokenizer``.
An entry with ``embedding: true`` serves embeddings only (and reranks by cosine
similarity of them); one with ``embedding: true, pooling: rank`` is a reranker and
serves ``/v1/rerank`` only (``rerank``); others serve chat and completions. All serve
the tokenizer endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from adapters.base import (
    Adapter,
    CallStats,
    Capability,
    DeploymentConfig,
    LocalModel,
    ModelFacts,
    Resources,
)
from adapters.llamacpp import chat as chat_api
from adapters.llamacpp import completions as completions_api
from adapters.llamacpp import embeddings as embeddings_api
from adapters.llamacpp import rerank as rerank_api
from adapters.llamacpp import tokenizer as tokenizer_api
from adapters.llamacpp.config import (
    LlamaCppConfig,
    LocalConfig,
    ModelFileError,
    load_spec,
    resolve_model_path,
)
from adapters.llamacpp.gguf import FILE_TYPES, human_count, read_all
from adapters.llamacpp.models import ModelLoadFailed, ModelManager, ModelSlot
from proxy.schemas.base import Envelope

log = logging.getLogger("switchyard.llamacpp")

MANAGER_KEY = "llamacpp.models"

_GENERATE = frozenset({Capability.CHAT, Capability.COMPLETIONS, Capability.TOKENIZE})
_EMBED = frozenset({Capability.EMBEDDINGS, Capability.TOKENIZE})
_RERANK = frozenset({Capability.RERANK, Capability.TOKENIZE})


def _manager(resources: Resources) -> ModelManager:
    manager = resources.extra.get(MANAGER_KEY)
    if manager is None:
        local = resources.settings.section("local", LocalConfig)
        manager = ModelManager(local.max_loaded_models, local.memory_budget_mb)
        resources.extra[MANAGER_KEY] = manager
    return manager  # type: ignore[no-any-return]


class LlamaCppAdapter(Adapter):
    name = "llamacpp"
    Config = LlamaCppConfig
    capabilities = _GENERATE | _EMBED | _RERANK
    cancel_on_disconnect = True
    readiness_is_checked = True
    holds_models_in_process = True

    def __init__(self, config: DeploymentConfig, resources: Resources) -> None:
        super().__init__(config, resources)
        assert isinstance(config, LlamaCppConfig)
        self.cfg = config
        if config.embedding:
            self.capabilities = _RERANK if config.pooling == "rank" else _EMBED  # type: ignore[misc]
        else:
            self.capabilities = _GENERATE  # type: ignore[misc]
        self.manager = _manager(resources)
        self.file_error: str | None = None
        try:
            path = resolve_model_path(config)
        except ModelFileError as exc:
            self.file_error = str(exc)
            path = Path(config.path or f"<{config.package}>")
        self.slot: ModelSlot = self.manager.slot(load_spec(config, path), config.name)
        self._facts: ModelFacts | None = None

    @property
    def label(self) -> str:
        return f"{self.name}:{self.config.name}"

    @property
    def context_window(self) -> int | None:
        return self.cfg.n_ctx

    async def count_text_tokens(self, text: str) -> int | None:
        if self.file_error is not None:
            return None
        try:
            return await tokenizer_api.count_text(self, text)
        except ModelLoadFailed:
            return None

    async def start(self) -> None:
        await self.manager.start()
        if self.file_error is not None:
            log.error("model %s cannot load: %s", self.config.name, self.file_error)
            return
        try:
            await asyncio.to_thread(self.slot.inspect)
        except ModelFileError as exc:
            log.error("model %s cannot load: %s", self.config.name, exc)
            return
        if self.cfg.preload:
            with contextlib.suppress(ModelLoadFailed):  # recorded; /health/ready reports it
                await self.manager.preload(self.slot)

    async def aclose(self) -> None:
        await self.manager.aclose()

    def readiness(self) -> tuple[bool, str]:
        if self.file_error is not None:
            return False, self.file_error
        return self.slot.readiness()

    def local_models(self) -> list[LocalModel]:
        slot = self.slot
        return [
            LocalModel(
                name=self.config.name,
                loaded=slot.llm is not None,
                memory_bytes=slot.size_bytes,
                queue_depth=slot.queue.waiting,
                expires_in_s=slot.expires_in_s(),
            )
        ]

    async def model_facts(self) -> ModelFacts | None:
        if self.file_error is not None:
            return None
        if self._facts is None:
            try:
                self._facts = await asyncio.to_thread(_facts_of, Path(self.slot.spec.path))
            except (OSError, ModelFileError) as exc:
                log.warning("cannot describe %s: %s", self.config.name, exc)
                return None
        return self._facts

    async def load(self) -> bool:
        self.check_file()
        await self.manager.preload(self.slot)
        return True

    async def keep_alive(self, seconds: float | None) -> None:
        await self.manager.keep_alive(self.slot, seconds)

    def check_file(self) -> None:
        if self.file_error is not None:
            raise ModelLoadFailed(f"Model '{self.config.name}' cannot load: {self.file_error}")

    async def chat(self, request: Envelope[Any], stats: CallStats) -> Any:
        self.check_file()
        return await chat_api.chat(self, request, stats)

    def chat_stream(self, request: Envelope[Any], stats: CallStats) -> AsyncIterator[Any]:
        return chat_api.chat_stream(self, request, stats)

    async def complete(self, request: Envelope[Any], stats: CallStats) -> Any:
        self.check_file()
        return await completions_api.complete(self, request, stats)

    def complete_stream(self, request: Envelope[Any], stats: CallStats) -> AsyncIterator[Any]:
        return completions_api.complete_stream(self, request, stats)

    async def embed(self, request: Envelope[Any], stats: CallStats) -> Any:
        self.check_file()
        return await embeddings_api.embed(self, request, stats)

    async def rerank(self, request: Envelope[Any], stats: CallStats) -> Any:
        if Capability.RERANK not in self.capabilities:
            return await super().rerank(request, stats)  # the cosine fallback
        self.check_file()
        return await rerank_api.rerank(self, request, stats)

    async def tokenize(self, request: Envelope[Any], stats: CallStats) -> Any:
        self.check_file()
        return await tokenizer_api.tokenize(self, request)

    async def detokenize(self, request: Envelope[Any], stats: CallStats) -> Any:
        self.check_file()
        return await tokenizer_api.detokenize(self, request)

    async def count_tokens(self, request: Envelope[Any], stats: CallStats) -> Any:
        self.check_file()
        return await tokenizer_api.count_tokens(self, request)


def _facts_of(path: Path) -> ModelFacts:
    """A GGUF file's facts; its digest identifies the file (path, size, modification
    time) rather than hashing gigabytes of weights."""
    metadata, parameters = read_all(path)
    stat = path.stat()
    identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    file_type = metadata.get("general.file_type")
    return ModelFacts(
        format="gguf",
        family=str(metadata.get("general.architecture", "")),
        parameter_size=human_count(parameters)
        if parameters
        else str(metadata.get("general.size_label", "")),
        quantization_level=FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else "",
        size_bytes=stat.st_size,
        modified_at=stat.st_mtime,
        digest=hashlib.sha256(identity).hexdigest(),
        metadata={**metadata, "general.parameter_count": parameters},
        template=str(metadata.get("tokenizer.chat_template", "")),
    )
