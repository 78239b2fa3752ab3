"""Just enough of the GGUF header to size a model before loading it.

The KV cache is often as large as the weights, and its size follows from a few
metadata keys (layers, embedding width, attention heads) and ``n_ctx``; the compute
buffer follows from the vocabulary size and the batch. Reading them
first lets the loader refuse a model that cannot fit ("out of memory: needs ...")
instead of letting llama.cpp fail, and lets the memory budget count a model correctly
before it was ever loaded. Reading stops as soon as those keys are found.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any, BinaryIO

from adapters.llamacpp.config import GGUF_MAGIC, ModelFileError

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_WANTED = ("block_count", "embedding_length", "attention.head_count")
_OPTIONAL = ("attention.head_count_kv", "vocab_size")


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ModelFileError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    length = _read(f, "<Q")
    return f.read(length).decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = _read(f, "<I"), _read(f, "<Q")
        if item in _SCALARS:
            f.seek(struct.calcsize(_SCALARS[item]) * count, 1)
        else:
            for _ in range(count):
                _value(f, item)
        return None
    raise ModelFileError(f"unknown GGUF value type {kind}")


def _complete(found: dict[str, Any], last_key: str) -> bool:
    """Whether the sizing keys are in (the optional ones are waited for until the
    tokenizer section, which writers put after the architecture's keys)."""
    arch = found.get("general.architecture")
    if not arch or not all(f"{arch}.{k}" in found for k in _WANTED):
        return False
    if last_key.startswith("tokenizer."):
        return True
    return all(f"{arch}.{k}" in found for k in _OPTIONAL)


def read_metadata(path: Path) -> dict[str, Any]:
    """The scalar metadata up to the keys that size the KV cache."""
    found: dict[str, Any] = {}
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelFileError(f"not a GGUF file: {path}")
        version = _read(f, "<I")
        if version < 2:
            raise ModelFileError(f"GGUF version {version} is too old: {path}")
        _read(f, "<Q")
        pairs = _read(f, "<Q")
        for _ in range(pairs):
            key = _string(f)
            found[key] = _value(f, _read(f, "<I"))
            if _complete(found, key):
                break
    return found


def kv_cache_bytes(metadata: dict[str, Any], n_ctx: int) -> int:
    """An f16 KV-cache estimate (0 when the keys are missing)."""
    arch = metadata.get("general.architecture", "")
    try:
        layers = int(metadata[f"{arch}.block_count"])
        embd = int(metadata[f"{arch}.embedding_length"])
        heads = int(metadata[f"{arch}.attention.head_count"])
        kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv", heads))
    except (KeyError, TypeError, ValueError):
        return 0
    return 2 * 2 * n_ctx * layers * embd * kv_heads // max(1, heads)


def compute_bytes(metadata: dict[str, Any], n_ubatch: int) -> int:
    """llama.cpp's compute buffer is dominated by one batch of f32 logits (0 if unknown)."""
    arch = metadata.get("general.architecture", "")
    try:
        vocab = int(metadata[f"{arch}.vocab_size"])
    except (KeyError, TypeError, ValueError):
        return 0
    return 4 * n_ubatch * vocab


def read_all(path: Path) -> tuple[dict[str, Any], int]:
    """Every scalar and string metadata key (arrays skipped), and the parameter count
    summed over the tensor infos that follow them."""
    found: dict[str, Any] = {}
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelFileError(f"not a GGUF file: {path}")
        if _read(f, "<I") < 2:
            raise ModelFileError(f"GGUF version is too old: {path}")
        tensors = _read(f, "<Q")
        pairs = _read(f, "<Q")
        for _ in range(pairs):
            key = _string(f)
            value = _value(f, _read(f, "<I"))
            if value is not None:
                found[key] = value
        parameters = 0
        for _ in range(tensors):
            _string(f)
            dims = [_read(f, "<Q") for _ in range(_read(f, "<I"))]
            _read(f, "<I")  # type
            _read(f, "<Q")  # offset
            count = 1
            for d in dims:
                count *= d
            parameters += count
    return found, parameters


#: ``general.file_type`` (llama.cpp's ``llama_ftype``) as the names Ollama shows.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0",
}  # fmt: skip


def human_count(n: int) -> str:
    """A parameter count as Ollama writes it (its ``format.HumanNumber``: ``134.52M``,
    ``7.2B``, ``8B``)."""
    if n >= 1_000_000_000:
        value = n / 1e9
        return f"{value:.0f}B" if value == math.floor(value) else f"{value:.1f}B"
    if n >= 1_000_000:
        value = n / 1e6
        return f"{value:.0f}M" if value == math.floor(value) else f"{value:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}K"
    return str(n)


def tensor_names(path: Path) -> set[str]:
    """The names of the tensors a GGUF file holds (the header only: every metadata
    pair is skipped, then the tensor infos are read)."""
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelFileError(f"not a GGUF file: {path}")
        version = _read(f, "<I")
        if version < 2:
            raise ModelFileError(f"GGUF version {version} is too old: {path}")
        tensors, pairs = _read(f, "<Q"), _read(f, "<Q")
        for _ in range(pairs):
            _string(f)
            _value(f, _read(f, "<I"))
        names = set()
        for _ in range(tensors):
            names.add(_string(f))
            dims = _read(f, "<I")
            f.seek(8 * dims + 4 + 8, 1)  # the dimensions, the type, the offset
    return names


def has_classifier_head(path: Path) -> bool:
    """Whether the model has the classifier head rank pooling scores with (``cls`` as
    in BERT rerankers, or ``cls.output``). llama.cpp aborts the whole process
    (``GGML_ABORT``) when rank pooling meets a model without one, so it is checked
    before loading."""
    names = tensor_names(path)
    return "cls.weight" in names or "cls.output.weight" in names
