"""RAG at request time: the latest user message queries the active collections, and the
best chunks that fit ``rag.context_tokens`` go to the model as numbered sources.

The context joins the leading system message (or becomes one at the top): many chat
templates reject a system message anywhere but first. The sources reach the client in
an ``x-switchyard-sources`` header and, for non-streamed answers, in the body's
``switchyard.sources``.

Collections are searched as the caller's owner (its key): naming a collection of
another key is answered like naming one that does not exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extensions.activation import Activation
from extensions.base import ChatCall, Extension, ExtensionServices
from extensions.rag.config import RagConfig
from extensions.rag.jobs import IndexJobs
from extensions.rag.query import QueryWindow
from extensions.rag.store import RagStore
from extensions.services import make_embedder, make_reranker
from proxy.errors import InvalidRequest, NotFound, shown
from proxy.settings import Settings
from proxy.telemetry import span

if TYPE_CHECKING:
    from proxy.replicas import ReplicaPlan

_HEADER_LIMIT = 4000
_INSTRUCTION = (
    "Use the numbered sources below when they are relevant to the question, and cite "
    "them by number like [1]. If they do not contain the answer, say so."
)


def latest_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict)
                ).strip()
            return str(content or "").strip()
    return ""


def sources_header(sources: list[dict[str, Any]]) -> str:
    """Compact ASCII JSON (header-safe), dropping trailing sources past the size limit."""
    shown = list(sources)
    while shown:
        text = json.dumps(shown, ensure_ascii=True, separators=(",", ":"))
        if len(text) <= _HEADER_LIMIT:
            return text
        shown.pop()
    return "[]"


def with_context(messages: list[dict[str, Any]], context: str) -> list[dict[str, Any]]:
    if (
        messages
        and messages[0].get("role") == "system"
        and isinstance(messages[0].get("content"), str)
    ):
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{context}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": context}, *messages]


class RagExtension(Extension):
    """Retrieval at request time; owns the vector store and the management API."""

    name = "rag"
    order = 30

    def __init__(self, services: ExtensionServices) -> None:
        super().__init__(services)
        self.config = services.settings.section("rag", RagConfig)
        self.store: RagStore | None = None

    async def start(self) -> None:
        model = self.config.embedding_model
        reranker = self.config.rerank_model or model
        config = self.config
        jobs = IndexJobs(
            self.services.store.extension_jobs,
            heartbeat_s=config.index_job_heartbeat_s,
            stale_after_s=config.index_job_stale_after_s,
        )
        store = RagStore(
            self.config,
            data_dir=Path(self.services.settings.server.data_dir),
            # Through ``self.services`` at each call: a reload lends this extension the
            # next generation's router (see ``keep_on_reload``).
            embed=lambda texts: make_embedder(self.services.router, model)(texts),
            query_window=QueryWindow(
                count_tokens=lambda text: self.services.count_tokens(model, text),
                context_window=lambda: self.services.context_window(model),
            ),
            jobs=jobs,
            rerank=lambda query, texts: make_reranker(self.services.router, reranker)(query, texts),
        )
        await store.start()
        self.store = store

    async def aclose(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            await store.aclose()

    def busy(self) -> bool:
        return self.store is not None and self.store.busy()

    def keep_on_reload(self, settings: Settings) -> bool:
        return settings.section("rag", RagConfig) == self.config

    @classmethod
    def replica_problems(cls, settings: Settings, plan: ReplicaPlan) -> list[str]:
        return settings.section("rag", RagConfig).replica_problems(plan)

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        from extensions.rag.routes import rag_router

        return [rag_router(max_upload_mb=settings.section("rag", RagConfig).max_upload_mb)]

    def active(self, activation: Activation) -> bool:
        return bool(activation.rag)

    async def validate(self, call: ChatCall) -> None:
        store = self.store
        if store is None:
            raise InvalidRequest("RAG is not enabled on this server.", param="rag")
        for collection in call.activation.rag:
            if not await store.has_collection(call.team_id, collection):
                # 404 like the management API: another key's collection reads as unknown.
                raise NotFound(f"Unknown RAG collection '{shown(collection)}'.", param="rag")

    async def before_request(self, call: ChatCall) -> None:
        query = latest_user_text(call.messages)
        if not query:
            return
        config = self.config
        assert self.store is not None  # validate() refused the request otherwise
        with span("rag.retrieval", collections=len(call.activation.rag), top_k=config.top_k):
            hits = await self.store.search(call.team_id, call.activation.rag, query, config.top_k)
        budget = config.context_tokens
        blocks: list[str] = []
        for hit in hits:
            number = len(blocks) + 1
            block = f"[{number}] ({hit.source or hit.source_id})\n{hit.text.strip()}"
            cost = await self.services.count_tokens(call.model, block)
            if cost > budget:
                break
            budget -= cost
            blocks.append(block)
            call.sources.append(
                {
                    "index": number,
                    "id": hit.id,
                    "source_id": hit.source_id,
                    "source": hit.source,
                    "collection": hit.collection,
                    "score": round(float(hit.score), 4),
                }
            )
        if not blocks:
            return
        context = _INSTRUCTION + "\n\n" + "\n\n".join(blocks)
        call.set_messages(with_context(call.messages, context))
        call.response_headers["x-switchyard-sources"] = sources_header(call.sources)
