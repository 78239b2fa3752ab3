"""How a source is laid out in Chroma: chunk ids, chunk metadata, and hits read back.

A source (one JSON document, uploaded file or indexed path) is identified by
``source_id``; its chunks' ids embed the source's content hash, so a new version of a
source can be written beside the old one before the old one is deleted.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from extensions.rag.chunking import Chunk
from extensions.rag.schemas import RESERVED_METADATA, Hit, Metadata, Position
from proxy.errors import InvalidRequest, shown

#: Chroma's own rule for collection names, checked here to answer 400 with the reason.
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")


class PreparedSource(msgspec.Struct, kw_only=True):
    """One source, chunked and ready to embed and store."""

    source_id: str
    source: str | None
    origin: str
    doc_type: str
    content_hash: str
    chunks: list[Chunk]
    metadata: Metadata = {}
    language: str | None = None

    def chunk_ids(self) -> list[str]:
        return [f"{self.source_id}#{self.content_hash[:16]}#{c.index}" for c in self.chunks]

    def chunk_metadatas(self) -> list[Metadata]:
        common: Metadata = {
            **self.metadata,
            "source_id": self.source_id,
            "origin": self.origin,
            "doc_type": self.doc_type,
            "content_hash": self.content_hash,
        }
        if self.source is not None:
            common["source"] = self.source
        if self.language:
            common["language"] = self.language
        out: list[Metadata] = []
        for chunk in self.chunks:
            meta: Metadata = {
                **common,
                "chunk": chunk.index,
                "char_start": chunk.start,
                "char_end": chunk.end,
            }
            if chunk.page is not None:
                meta["page"] = chunk.page
            out.append(meta)
        return out


def check_collection_name(name: str, param: str = "name") -> None:
    if not COLLECTION_NAME.match(name) or ".." in name:
        raise InvalidRequest(
            f"Invalid collection name '{shown(name)}': use 3-512 characters from letters, digits, "
            "'.', '_' and '-', starting and ending with a letter or digit.",
            param=param,
        )


def hits_from_result(collection: str, result: dict[str, Any]) -> list[Hit]:
    ids = result["ids"][0] if result.get("ids") else []
    documents = (result.get("documents") or [[]])[0]
    metadatas = (result.get("metadatas") or [[]])[0]
    distances = (result.get("distances") or [[]])[0]
    hits = []
    for chunk_id, text, meta, distance in zip(ids, documents, metadatas, distances, strict=True):
        meta = meta or {}
        source = meta.get("source")
        page = meta.get("page")
        hits.append(
            Hit(
                id=chunk_id,
                text=text or "",
                score=round(1.0 - float(distance), 6),
                collection=collection,
                source_id=str(meta.get("source_id", chunk_id)),
                source=source if isinstance(source, str) else None,
                position=Position(
                    chunk=int(meta.get("chunk", 0)),
                    start=int(meta.get("char_start", 0)),
                    end=int(meta.get("char_end", 0)),
                    page=int(page) if isinstance(page, int) else None,
                ),
                metadata={k: v for k, v in meta.items() if k not in RESERVED_METADATA},
            )
        )
    return hits
