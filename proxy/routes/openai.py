"""The OpenAI-compatible endpoints under /v1."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post

from proxy.app_state import AppState
from proxy.context import request_info
from proxy.errors import ModelNotFound, shown
from proxy.gateway import (
    CHAT,
    COMPLETIONS,
    DETOKENIZE,
    EMBEDDINGS,
    RERANK,
    TOKENIZE,
    TOKENS_COUNT,
    Gateway,
    json_response,
)
from proxy.schemas.chat import ChatCompletionRequest
from proxy.schemas.completions import CompletionRequest
from proxy.schemas.embeddings import EmbeddingRequest
from proxy.schemas.models import Model, ModelList
from proxy.schemas.rerank import RerankRequest
from proxy.schemas.tokenize import DetokenizeRequest, TokenizeRequest
from proxy.tenancy.admission import may_use_model


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    state: AppState = request.app.state.switchyard
    return state.gateway


@post(
    "/chat/completions",
    summary="Create a chat completion",
    status_code=200,
    opt={"request_body": ChatCompletionRequest},
)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _gateway(request).serve(CHAT, request)


@post(
    "/completions",
    summary="Create a (legacy) completion",
    status_code=200,
    opt={"request_body": CompletionRequest},
)
async def completions(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _gateway(request).serve(COMPLETIONS, request)


@post(
    "/embeddings",
    summary="Create embeddings",
    status_code=200,
    opt={"request_body": EmbeddingRequest},
)
async def embeddings(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _gateway(request).serve(EMBEDDINGS, request)


@post(
    "/rerank",
    summary="Rerank documents by relevance to a query (Cohere/Jina shape)",
    status_code=200,
    opt={"request_body": RerankRequest},
)
async def rerank(request: Request[Any, Any, Any]) -> Response[Any]:
    """See ``proxy.schemas.rerank`` for the wire format and ``proxy.rerank`` for how a
    model reranks (a reranker, or any embedding model by cosine similarity)."""
    return await _gateway(request).serve(RERANK, request)


@post(
    "/tokenize",
    summary="Tokenize text or chat messages",
    status_code=200,
    opt={"request_body": TokenizeRequest},
)
async def tokenize(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _gateway(request).serve(TOKENIZE, request)


@post(
    "/detokenize",
    summary="Turn token ids back into text",
    status_code=200,
    opt={"request_body": DetokenizeRequest},
)
async def detokenize(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _gateway(request).serve(DETOKENIZE, request)


@post(
    "/tokens/count",
    summary="Count the tokens of text or chat messages",
    status_code=200,
    opt={"request_body": TokenizeRequest},
)
async def tokens_count(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _gateway(request).serve(TOKENS_COUNT, request)


def allowed_models(request: Request[Any, Any, Any]) -> list[Model]:
    """The models this caller may use (its key's and team's ``allowed_models``)."""
    state: AppState = request.app.state.switchyard
    identity = request_info(request.scope).identity
    if identity is None or not identity.scopes:
        return state.model_cards
    return [card for card in state.model_cards if may_use_model(identity, card.id)]


@get("/models", summary="List models")
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    return json_response(ModelList(data=allowed_models(request)))


@get("/models/{model_id:path}", summary="Retrieve a model")
async def get_model(request: Request[Any, Any, Any], model_id: str) -> Response[bytes]:
    wanted = model_id.lstrip("/")
    for card in allowed_models(request):
        if card.id == wanted:
            return json_response(card)
    raise ModelNotFound(f"The model '{shown(wanted)}' does not exist.", param="model")


def openai_router(guards: list[Any], extra_handlers: list[Any] | None = None) -> Router:
    """/v1 with the OpenAI endpoints plus ``extra_handlers`` (extensions' APIs), all guarded."""
    return Router(
        path="/v1",
        route_handlers=[
            chat_completions,
            completions,
            embeddings,
            rerank,
            tokenize,
            detokenize,
            tokens_count,
            list_models,
            get_model,
            *(extra_handlers or ()),
        ],
        guards=guards,
        tags=["OpenAI"],
    )
