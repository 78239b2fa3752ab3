"""Embeddings: ``POST /v1/embeddings``."""

from __future__ import annotations

from typing import Literal

from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse

# msgspec allows one array-like type per union, so the four OpenAI shapes (a string,
# strings, one token array, token arrays) are one list whose items may be any of them.
EmbeddingInput = str | list[str | int | list[int]]


class EmbeddingRequest(WireRequest):
    model: str
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | UnsetType = UNSET
    user: str | UnsetType = UNSET


class Embedding(WireResponse):
    index: int
    embedding: list[float] | str
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(WireResponse):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(WireResponse):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: Literal["list"] = "list"
