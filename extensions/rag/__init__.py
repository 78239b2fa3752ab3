"""Retrieval-augmented generation over ChromaDB: the store, ingestion and its API.

``RagStore`` is the library the request pipeline uses (``has_collection``, ``search``);
``rag_router`` is the management API under ``/v1/switchyard/rag``.
"""

from extensions.rag.schemas import Hit, Position
from extensions.rag.store import Embedder, RagStore

__all__ = ["Embedder", "Hit", "Position", "RagStore"]
