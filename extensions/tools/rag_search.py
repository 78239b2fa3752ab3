"""``rag_search``: the model searches the RAG store with a query of its own.

Without a ``collection`` argument it searches the collections active for the request
(``ToolContext.rag_collections``). A named collection is searched when it is one of
those, or when the store says the caller may read it (``await
store.has_collection(owner, name)``); a store without that method limits the model to
the active collections. Every search runs as the caller's owner (its key), so another
key's collection is an unknown collection here too. Errors the
store raises (``SwitchyardError``: unknown collection, embedding model unreachable)
come back to the model as error text.

The real ``RagStore`` is tested by its own suite (tests for extensions/rag); this
tool's tests use a small fake store with the same ``search`` signature.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, ClassVar

import msgspec

from extensions.tools.base import (
    BaseTool,
    ToolContext,
    ToolError,
    decode_arguments,
    function_definition,
)
from extensions.tools.config import ToolsConfig
from proxy.errors import SwitchyardError

DEFAULT_K = 5
MAX_K = 20


class RagSearchArgs(msgspec.Struct):
    query: Annotated[str, msgspec.Meta(min_length=1)]
    collection: str | None = None
    k: Annotated[int, msgspec.Meta(ge=1)] | None = None


class RagSearchTool(BaseTool):
    name: ClassVar[str] = "rag_search"

    @classmethod
    def from_config(cls, config: ToolsConfig) -> RagSearchTool:
        return cls()

    def definition(self) -> dict[str, Any]:
        return function_definition(
            self.name,
            "Search the document collections of this conversation. Returns numbered "
            "passages with their source ids; cite them as [n].",
            {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for."},
                    "collection": {
                        "type": "string",
                        "description": "One collection to search; default: the active ones.",
                    },
                    "k": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_K,
                        "description": f"Number of passages (default {DEFAULT_K}).",
                    },
                },
                "required": ["query"],
            },
        )

    async def _run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        args = decode_arguments(arguments, RagSearchArgs)
        store = context.rag
        if store is None:
            raise ToolError("RAG is not configured on this gateway")
        owner = context.team_id
        collections = await _collections(store, owner, args.collection, context.rag_collections)
        k = min(args.k or DEFAULT_K, MAX_K)
        try:
            hits = await store.search(owner, collections, args.query, k)
        except SwitchyardError as exc:  # unknown collection, embedding model down, ...
            raise ToolError(f"search failed: {exc.message}") from None
        if not hits:
            return f"No passages found for {args.query!r} in {', '.join(collections)}."
        return "\n\n".join(_format(i, hit) for i, hit in enumerate(hits, 1))


async def _collections(store: Any, owner: str, named: str | None, active: list[str]) -> list[str]:
    if named is None or not named.strip():
        if not active:
            raise ToolError("no collection is active for this request; name one")
        return list(active)
    named = named.strip()
    if named in active:
        return [named]
    has_collection = getattr(store, "has_collection", None)
    exists = has_collection(owner, named) if has_collection is not None else False
    if inspect.isawaitable(exists):
        exists = await exists
    if not exists:
        listed = ", ".join(active) or "none"
        raise ToolError(f"unknown collection '{named}' (active for this request: {listed})")
    return [named]


def _format(index: int, hit: Any) -> str:
    source = getattr(hit, "source", "") or ""
    header = f"[{index}] source_id={hit.source_id}"
    if source and source != hit.source_id:
        header += f" source={source}"
    header += f" collection={hit.collection} score={hit.score:.3f}"
    return f"{header}\n{hit.text.strip()}"
