"""Just enough of the GGUF header to size a model before loading it.

The KV cache is often as large as the weights, and its size follows from a few
metadata keys (layers, embedding width, attention heads) and ``n_ctx``; the compute
buffer follows from the vocabulary size and the batch. Reading them
first lets the loader refuse a model that cannot fit ("out of memory: needs ...")
instead of letting llama.cpp fail, and lets the memory budget count a model correctly
before it was ever loaded. Reading stops as soon as those keys are found.
"""

from __future__ import annotations

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
