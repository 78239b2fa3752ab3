"""Semantic lookup: a near-duplicate question finds a cached answer by embedding.

The question is the last user message (chat) or the prompt (completions); everything
else in the request (the other messages, the parameters, the extensions) must be the
same, so each stored vector carries a digest of that context and only vectors with the
caller's context are compared. Vectors are normalised when stored, so the cosine
similarity is a dot product; the search is brute force over the scope's newest
``max_candidates`` entries (a few thousand 576-float vectors take well under a
millisecond with numpy), which is what a per-team, per-model cache holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

from proxy.cache.keys import canonical_body

CONTEXT_BYTES = 16
"""Length of the context digest that starts every stored vector."""

_encode = msgspec.json.Encoder(order="sorted").encode


def question(route: str, body: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The text to embed and the body without it, or ``None`` when there is no text."""
    if route == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str) and prompt.strip():
            return prompt, {k: v for k, v in body.items() if k != "prompt"}
        return None
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for position in range(len(messages) - 1, -1, -1):
        message = messages[position]
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            text = _text(content)
            if not text:
                return None
            # Only the text is compared by similarity; images, audio and files stay in
            # the context, which must match exactly (another picture is another question).
            others = [p for p in content if not _is_text(p)] if isinstance(content, list) else []
            kept = {**message, "content": others or None}
            rest = [*messages[:position], kept, *messages[position + 1 :]]
            return text, {**body, "messages": rest}
    return None


def _is_text(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if _is_text(p)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def context_digest(route: str, model: str, rest: Mapping[str, Any], extensions: Any) -> bytes:
    digest = hashlib.sha256(f"{route}\0{model}\0".encode())
    digest.update(canonical_body(rest))
    digest.update(_encode(extensions))
    return digest.digest()[:CONTEXT_BYTES]


def stored_vector(context: bytes, embedding: list[float]) -> bytes | None:
    """What is stored: the context digest, then the normalised float32 vector."""
    vector = np.asarray(embedding, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if not norm or not np.isfinite(norm):
        return None
    return context + (vector / norm).tobytes()


def best_match(query: bytes, candidates: list[tuple[str, bytes]]) -> tuple[str, float] | None:
    """The candidate most similar to ``query`` (both ``stored_vector`` blobs) among those
    with the same context and dimension, with its cosine similarity."""
    context, vector = query[:CONTEXT_BYTES], query[CONTEXT_BYTES:]
    keys = [
        k for k, blob in candidates if blob[:CONTEXT_BYTES] == context and len(blob) == len(query)
    ]
    if not keys:
        return None
    found = dict(candidates)
    matrix = np.frombuffer(b"".join(found[k][CONTEXT_BYTES:] for k in keys), dtype=np.float32)
    scores = matrix.reshape(len(keys), -1) @ np.frombuffer(vector, dtype=np.float32)
    best = int(np.argmax(scores))
    return keys[best], float(scores[best])
