"""What the e2e modules on the RAG management API (/v1/switchyard/rag) share: the
gateway they run beside its embeddings upstream, its embedding model entry, and small
helpers for the API's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support.rag_fakes import EmbeddingsUpstream
from tests.support.servers import RunningServer


class Env:
    """A running gateway, its embeddings upstream, and the folders of its test root:
    ``allowed`` (in ``rag.allowed_dirs``) and ``outside`` (not)."""

    def __init__(self, gateway: RunningServer, upstream: EmbeddingsUpstream, root: Path) -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.allowed = root / "allowed"
        self.outside = root / "outside"


def embedding_model(url: str, timeout_s: float) -> dict[str, Any]:
    """The configured embedding model: an ``openai``-adapter deployment on the
    bag-of-words upstream at ``url``."""
    return {
        "name": "smollm2-135m-embed",
        "adapter": "openai",
        "model": "bag-of-words",
        "base_url": url,
        "api_key": "sk-upstream",
        "timeout_s": timeout_s,
    }


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The OpenAI-style error object of ``response``, which must have ``status``."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def create(api: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    """Create the collection ``name`` (a 201) and return it."""
    response = api.post("/collections", json={"name": name, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def chunks_in(api: httpx.Client, name: str) -> int:
    """How many chunks the collection ``name`` holds."""
    count: int = api.get(f"/collections/{name}").json()["chunks"]
    return count
