"""Loaded models: lazy loading off the event loop, LRU eviction, idle unload, readiness.

Each distinct ``LoadSpec`` gets a ``ModelSlot``: at most one llama.cpp instance, one
worker thread that does everything touching that instance (load, generate, unload),
and one FIFO queue. The ``ModelManager`` is shared by every ``llamacpp`` deployment of
an app (it lives in the lifespan's ``Resources.extra``) because ``max_loaded_models``
and the memory budget are limits over all of them.

A model that is in use (a request holds it, running or queued) is never unloaded:
loading another waits until an idle one can go.

llama-cpp-python's ``verbose=False`` silences llama.cpp by pointing the process's
stdout and stderr at /dev/null while the weights load; loads are serialized (one at
a time), so the streams are always restored, but other threads' output during a
load is lost. ``verbose=True`` would instead print the whole GGUF metadata per load.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import llama_cpp

from adapters.llamacpp.config import LoadSpec, ModelFileError, check_model_file
from adapters.llamacpp.engine import Finish
from adapters.llamacpp.gguf import (
    compute_bytes,
    has_classifier_head,
    kv_cache_bytes,
    read_metadata,
)
from adapters.llamacpp.native import load_model, repack_weights
from adapters.llamacpp.scheduler import RequestQueue
from proxy.errors import ServiceUnavailable

log = logging.getLogger("switchyard.llamacpp")
native_log = logging.getLogger("switchyard.llamacpp.native")

T = TypeVar("T")
MiB = 1024 * 1024

_POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


def check_reranker(path: Path, spec: LoadSpec) -> None:
    """Refuse ``pooling: rank`` for a model without a classifier head, before llama.cpp
    would abort the process on it (see ``gguf.has_classifier_head``)."""
    if spec.pooling == "rank" and not has_classifier_head(path):
        raise ModelFileError(
            f"{path.name} has no classifier head (no cls or cls.output tensors), so it is "
            "not a reranker: `pooling: rank` needs a reranker GGUF such as bge-reranker"
        )


_NATIVE_LEVELS = {3: logging.WARNING, 4: logging.ERROR}  # ggml: 3 WARN, 4 ERROR


@llama_cpp.llama_log_callback
def _native(level: int, text: bytes, _: ctypes.c_void_p) -> None:
    """llama.cpp's own warnings and errors, into Switchyard's logs (not bare stderr)."""
    if level in _NATIVE_LEVELS:
        native_log.log(_NATIVE_LEVELS[level], text.decode("utf-8", errors="replace").rstrip())


class ModelLoadFailed(ServiceUnavailable):
    """The model could not be loaded; another deployment (a fallback) may still serve."""

    retryable = True


def available_memory() -> int | None:
    """``MemAvailable`` from /proc/meminfo in bytes, where the platform has it."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class ModelSlot:
    """One loadable model: its state, its worker thread and its queue."""

    def __init__(self, spec: LoadSpec, label: str) -> None:
        self.spec = spec
        self.label = label
        self.llm: Any = None
        self.error: str | None = None
        self.users = 0
        self.last_used = time.monotonic()
        self.queue = RequestQueue(spec.max_queue)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"llamacpp-{label}")
        self.loads = 0
        #: How generations ended (stop, length, cancelled), for metrics and tests.
        self.finished: Counter[str] = Counter()
        self.last_finish: Finish | None = None
        #: Estimated memory while loaded (weights, KV cache, compute buffer); ``inspect``.
        self.size_bytes = 0
        #: A client's ``keep_alive`` (Ollama's API), replacing ``spec.idle_unload_s``
        #: until the next one: 0 unloads as soon as idle, ``inf`` never; ``None``: the spec.
        self.keep_alive_s: float | None = None

    @property
    def idle_limit_s(self) -> float | None:
        """Idle seconds after which the model is unloaded (``None``: never)."""
        limit = self.keep_alive_s if self.keep_alive_s is not None else self.spec.idle_unload_s
        return None if limit is None or limit == math.inf else limit

    def expires_in_s(self) -> float | None:
        """Seconds until the idle unload (``inf``: never), while loaded; else ``None``."""
        if self.llm is None:
            return None
        limit = self.idle_limit_s
        if limit is None:
            return math.inf
        if self.users:
            return limit
        return max(0.0, limit - (time.monotonic() - self.last_used))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on this model's worker thread (which serializes all its work)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def record(self, finish: Finish) -> Finish:
        """Called on the worker thread when a generation ends."""
        self.finished[finish.reason] += 1
        self.last_finish = finish
        return finish

    def inspect(self) -> None:
        """Check the file and size the model from its header (a thread: it reads the file).

        Records and raises the reason when the file cannot be used.
        """
        path = Path(self.spec.path)
        try:
            check_model_file(path)
            metadata = read_metadata(path)
            spec = self.spec
            check_reranker(path, spec)
            self.size_bytes = (
                path.stat().st_size
                + kv_cache_bytes(metadata, spec.n_ctx)
                + compute_bytes(metadata, min(spec.n_batch, spec.n_ctx))
            )
        except ModelFileError as exc:
            self.error = str(exc)
            raise
        except OSError as exc:
            self.error = f"cannot read model file {path}: {exc}"
            raise ModelFileError(self.error) from None

    def readiness(self) -> tuple[bool, str]:
        if self.error is not None:
            return False, self.error
        if self.llm is not None:
            return True, "loaded"
        return True, "not loaded (loads on first use)"

    def _load(self) -> None:
        """Worker thread: load the weights and create the context."""
        spec = self.spec
        on_gpu = spec.n_gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload()
        free = available_memory()
        if not on_gpu and free is not None and self.size_bytes > free:
            raise ModelLoadFailed(
                f"out of memory: {Path(spec.path).name} with n_ctx={spec.n_ctx} needs about "
                f"{self.size_bytes // MiB} MiB (weights, KV cache, compute buffer), "
                f"{free // MiB} MiB available"
            )
        try:
            check_reranker(Path(spec.path), spec)
        except (ModelFileError, OSError) as exc:
            raise ModelLoadFailed(str(exc)) from None
        options: dict[str, Any] = {}
        if spec.embedding:
            options.update(
                embedding=True, n_ubatch=spec.n_batch, pooling_type=_POOLING[spec.pooling or "mean"]
            )
        try:
            llm = load_model(
                repack_weights(spec.weight_repacking),
                model_path=spec.path,
                n_ctx=spec.n_ctx,
                n_batch=spec.n_batch,
                n_gpu_layers=spec.n_gpu_layers,
                n_threads=spec.n_threads,
                n_threads_batch=spec.n_threads_batch,
                use_mmap=spec.use_mmap,
                flash_attn=spec.flash_attn,
                verbose=False,
                **options,
            )
        except MemoryError:
            raise ModelLoadFailed(f"out of memory while loading {spec.path}") from None
        except (ValueError, RuntimeError, OSError) as exc:
            where = "GPU memory or " if on_gpu else ""
            raise ModelLoadFailed(
                f"llama.cpp could not load {spec.path} ({exc}); likely out of {where}memory "
                f"for n_ctx={spec.n_ctx}, or a model architecture this llama.cpp does not know"
            ) from None
        self.llm = llm
        self.loads += 1

    def _close(self, llm: Any) -> None:
        llm.close()


class ModelManager:
    """Every local model of one app, and the limits they share."""

    def __init__(self, max_loaded_models: int | None, memory_budget_mb: float | None) -> None:
        llama_cpp.llama_log_set(_native, ctypes.c_void_p(0))
        self.max_loaded = max_loaded_models
        self.budget = int(memory_budget_mb * MiB) if memory_budget_mb else None
        self.slots: dict[LoadSpec, ModelSlot] = {}
        self._admission = asyncio.Lock()
        self._released = asyncio.Event()
        self._idle_task: asyncio.Task[None] | None = None
        self._refs = 0

    def slot(self, spec: LoadSpec, label: str) -> ModelSlot:
        found = self.slots.get(spec)
        if found is None:
            found = self.slots[spec] = ModelSlot(spec, label)
        return found

    def loaded(self) -> list[ModelSlot]:
        return [s for s in self.slots.values() if s.llm is not None]

    async def start(self) -> None:
        self._refs += 1
        if any(s.idle_limit_s is not None for s in self.slots.values()):
            self._watch_idle()

    def _watch_idle(self) -> None:
        if self._idle_task is None:
            self._idle_task = asyncio.create_task(self._unload_idle(), name="llamacpp-idle")

    async def keep_alive(self, slot: ModelSlot, seconds: float | None) -> None:
        """Set ``slot``'s idle limit from a client's ``keep_alive`` (see
        ``ModelSlot.keep_alive_s``); 0 unloads it now when no request holds it."""
        slot.keep_alive_s = seconds
        if seconds == 0:
            async with self._admission:
                if slot.llm is not None and not slot.users:
                    log.info("unloading %s (keep_alive 0)", slot.label)
                    await self._unload(slot)
        if slot.idle_limit_s is not None:
            self._watch_idle()

    async def aclose(self) -> None:
        self._refs -= 1
        if self._refs > 0:
            return
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None
        for slot in list(self.slots.values()):
            if slot.llm is not None:
                await self._unload(slot)
            slot.executor.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def use(self, slot: ModelSlot) -> AsyncIterator[Any]:
        """Hold ``slot``'s model loaded for the block; loads it first when needed."""
        slot.users += 1
        try:
            llm = slot.llm if slot.llm is not None else await self._load(slot)
            slot.last_used = time.monotonic()
            yield llm
        finally:
            slot.users -= 1
            slot.last_used = time.monotonic()
            self._released.set()

    async def preload(self, slot: ModelSlot) -> None:
        async with self.use(slot):
            pass

    async def _load(self, slot: ModelSlot) -> Any:
        async with self._admission:
            if slot.llm is not None:
                return slot.llm
            started = time.perf_counter()
            try:
                try:
                    await slot.run(slot.inspect)
                except ModelFileError as exc:
                    raise ModelLoadFailed(str(exc)) from None
                await self._make_room(slot)
                await slot.run(slot._load)
            except ModelLoadFailed as exc:
                slot.error = exc.message
                log.error("loading %s failed: %s", slot.label, exc.message)
                raise ModelLoadFailed(
                    f"Model '{slot.label}' is unavailable: {exc.message}"
                ) from None
            slot.error = None
            log.info(
                "loaded %s in %.2fs (~%d MiB)",
                slot.label,
                time.perf_counter() - started,
                slot.size_bytes // MiB,
            )
            return slot.llm

    def _over_limits(self, slot: ModelSlot) -> bool:
        others = [s for s in self.loaded() if s is not slot]
        if self.max_loaded is not None and len(others) + 1 > self.max_loaded:
            return True
        used = sum(s.size_bytes for s in others)
        return self.budget is not None and used + slot.size_bytes > self.budget

    async def _make_room(self, slot: ModelSlot) -> None:
        """Unload least recently used idle models until ``slot`` fits the limits."""
        if self.budget is not None and slot.size_bytes > self.budget:
            raise ModelLoadFailed(
                f"out of memory budget: {slot.label} needs about {slot.size_bytes // MiB} MiB, "
                f"more than local.memory_budget_mb ({self.budget // MiB} MiB)"
            )
        while self._over_limits(slot):
            idle = [s for s in self.loaded() if s is not slot and s.users == 0]
            if idle:
                victim = min(idle, key=lambda s: s.last_used)
                log.info("unloading %s (least recently used) to load %s", victim.label, slot.label)
                await self._unload(victim)
                continue
            self._released.clear()
            await self._released.wait()

    async def _unload(self, slot: ModelSlot) -> None:
        llm, slot.llm = slot.llm, None  # at once, so no new request picks it up
        if llm is not None:
            await slot.run(slot._close, llm)

    async def _unload_idle(self) -> None:
        while True:
            idles = [s.idle_limit_s for s in self.slots.values() if s.idle_limit_s is not None]
            await asyncio.sleep(min(30.0, max(0.2, min(idles, default=30.0) / 4)))
            now = time.monotonic()
            for slot in list(self.slots.values()):
                limit = slot.idle_limit_s
                if limit is None or slot.llm is None or slot.users:
                    continue
                if now - slot.last_used >= limit:
                    async with self._admission:
                        if slot.llm is not None and not slot.users:
                            log.info("unloading %s after %.1fs idle", slot.label, limit)
                            await self._unload(slot)
