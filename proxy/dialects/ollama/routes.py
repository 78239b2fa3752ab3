"""The ``/api`` handlers: decode, translate, run through the gateway, translate back."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, get, post, route
from litestar.enums import HttpMethod

from adapters.base import Adapter
from extensions.activation import read_activation
from proxy import __version__
from proxy.app_state import AppState
from proxy.context import request_info
from proxy.dialects.bridge import (
    ChatReply,
    CompletionReply,
    event_stream,
    run_chat,
    run_completions,
    run_embeddings,
)
from proxy.dialects.ollama import models
from proxy.dialects.ollama.answers import (
    StreamState,
    Timing,
    chat_answer,
    chat_final,
    chat_piece,
    completion_text,
    generate_answer,
    generate_piece,
    timestamp,
)
from proxy.dialects.ollama.translate import (
    chat_body,
    check_options,
    generate_body,
    keep_alive_s,
    model_name,
)
from proxy.dialects.ollama.wire import (
    ListResponse,
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
    ProcessResponse,
)
from proxy.errors import InvalidRequest, ModelNotFound, SwitchyardError, shown
from proxy.routes.openai import allowed_models
from proxy.schemas.base import WireRequest, decode_request
from proxy.schemas.chat import Usage

#: The Ollama release whose API this dialect follows (``/api/version``); clients
#: compare it to decide which features they may use.
OLLAMA_VERSION = "0.32.15"
NDJSON = "application/x-ndjson"

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
R = TypeVar("R", bound=WireRequest)


def _state(request: Request[Any, Any, Any]) -> AppState:
    return request.app.state.switchyard  # type: ignore[no-any-return]


def _json(value: Any, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        content=_encode(value), media_type="application/json", headers=headers, status_code=200
    )


def _line(value: Any) -> bytes:
    return _encode(value) + b"\n"


async def _decode(request: Request[Any, Any, Any], kind: type[R]) -> tuple[R, dict[str, Any]]:
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequest("missing request body")
    envelope = decode_request(raw, kind)
    return envelope.params, envelope.body


def _allowed_names(request: Request[Any, Any, Any]) -> set[str]:
    """The models this caller may use: the same list as ``/v1/models``."""
    return {card.id for card in allowed_models(request)}


def _resolve(request: Request[Any, Any, Any], name: str) -> tuple[str, list[Adapter]]:
    """The Switchyard name for the client's model name, and its deployments' adapters
    (none when the name lets an extension choose the model, as a bare persona does).
    Unknown models, and those the caller may not use (``/v1/models``' list, so both
    read the same and neither tells a forbidden model from a missing one), are Ollama's
    404; the gateway's admission checks the model again with the caller's limits."""
    if not name:
        raise InvalidRequest("model is required", param="model")
    switchyard = model_name(name)
    base, _ = read_activation(switchyard, {}, {})
    if not base:
        return switchyard, []
    deployments = _state(request).router.deployments.get(base)
    if deployments is None or base not in _allowed_names(request):
        raise ModelNotFound(f"model '{shown(name)}' not found", param="model")
    return switchyard, [d.adapter for d in deployments]


def _window(adapters: list[Adapter]) -> int | None:
    windows = [w for a in adapters if (w := a.context_window) is not None]
    return min(windows) if windows else None


def _keeper(adapters: list[Adapter], seconds: float | None) -> Callable[[], Awaitable[None]]:
    """What to do with the local models once the request is done (``keep_alive``)."""

    async def keep() -> None:
        for adapter in adapters:
            await adapter.keep_alive(seconds)

    return keep


def _timing(request: Request[Any, Any, Any], began: float, first: float | None) -> Timing:
    """Durations of a streamed answer: prompt evaluation until the first output, then
    generation until now (both as the gateway saw them)."""
    end = time.perf_counter()
    first = end if first is None else first
    total = end - request_info(request.scope).started
    return Timing(total_s=total, prompt_eval_s=first - began, eval_s=end - first)


def _reply_timing(request: Request[Any, Any, Any]) -> Timing:
    """Durations of a whole answer: the total, and the upstream's time as generation."""
    info = request_info(request.scope)
    upstream = info.stats.upstream_s
    return Timing(total_s=time.perf_counter() - info.started, eval_s=upstream or None)


async def _lifecycle(
    request: Request[Any, Any, Any],
    model: str,
    adapters: list[Adapter],
    seconds: float | None,
    name: str,
    empty: dict[str, Any],
    *,
    route: str,
    body: dict[str, Any],
) -> Response[bytes]:
    """An empty request: load the model (or, with ``keep_alive: 0``, unload it).

    It is admitted as a model call is (the key's allowed models, rate, parallel and
    budget limits; its usage and metrics under ``route`` and ``model``), since loading
    a model takes the server's time and memory as a generation does."""
    info = request_info(request.scope)
    info.route = route
    base, _ = read_activation(model, {}, {})
    await _state(request).gateway.tenancy.admit(info, base or model, body=body)
    info.model = base or model
    if seconds == 0:
        await _keeper(adapters, 0.0)()
        reason = "unload"
    else:
        for adapter in adapters:
            if await adapter.load():
                await adapter.keep_alive(seconds)
        reason = "load"
    return _json(
        {"model": name, "created_at": timestamp(time.time()), **empty, "done": True,
         "done_reason": reason}
    )  # fmt: skip


def _ndjson(events: AsyncIterator[bytes], headers: dict[str, str]) -> Response[Any]:
    shutdown = _line({"error": "The server is shutting down; the stream was ended."})
    return event_stream(events, headers, shutdown_frame=shutdown, media_type=NDJSON)


async def _streamed(
    request: Request[Any, Any, Any],
    chunks: AsyncIterator[Any],
    began: float,
    name: str,
    keep: Callable[[], Awaitable[None]],
    *,
    chat: bool,
) -> AsyncIterator[bytes]:
    state = StreamState()
    first: float | None = None
    try:
        async with aclosing(chunks) as items:  # type: ignore[type-var]
            async for chunk in items:
                text = state.text_of(chunk)
                if first is None and (text or state.calls):
                    first = time.perf_counter()
                if text:
                    piece = chat_piece if chat else generate_piece
                    yield _line(piece(name, time.time(), text))
        calls = state.tool_calls() if state.calls else []
        if calls:
            yield _line(chat_piece(name, time.time(), "", tool_calls=calls))
        timing = _timing(request, began, first)
        if chat:
            yield _line(chat_final(state, name, time.time(), timing))
        else:
            final = generate_answer("", state.finish_reason, state.usage, name, time.time(), timing)
            yield _line(final)
    except SwitchyardError as exc:  # after the stream began: Ollama's in-band error line
        yield _line({"error": exc.message})
    except Exception:  # never the exception's text: it is logged
        log.exception("Ollama stream failed after it began")
        yield _line({"error": "The stream failed unexpectedly."})
    finally:
        await keep()


@post("/api/chat", status_code=200, opt={"request_body": OllamaChatRequest}, summary="Ollama: chat")
async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
    params, raw = await _decode(request, OllamaChatRequest)
    name, adapters = _resolve(request, params.model)
    options = check_options(params.options)
    seconds = keep_alive_s(params.keep_alive)
    if not params.messages:
        empty = {"message": {"role": "assistant", "content": ""}}
        return await _lifecycle(
            request, name, adapters, seconds, params.model, empty, route="ollama_chat", body=raw
        )
    body = chat_body(
        params, name, options, context_window=_window(adapters), extension=raw.get("switchyard")
    )
    keep = _keeper(adapters, seconds)
    began = time.perf_counter()
    result = await run_chat(request, body, route="ollama_chat")
    if isinstance(result, ChatReply):
        await keep()
        answer = chat_answer(result.completion, params.model, time.time(), _reply_timing(request))
        return _json(answer, result.headers)
    events = _streamed(request, result.chunks, began, params.model, keep, chat=True)
    return _ndjson(events, result.headers)


@post(
    "/api/generate",
    status_code=200,
    opt={"request_body": OllamaGenerateRequest},
    summary="Ollama: generate",
)
async def generate(request: Request[Any, Any, Any]) -> Response[Any]:
    params, raw = await _decode(request, OllamaGenerateRequest)
    name, adapters = _resolve(request, params.model)
    options = check_options(params.options)
    seconds = keep_alive_s(params.keep_alive)
    if not params.prompt and not params.images and not params.suffix:
        return await _lifecycle(
            request, name, adapters, seconds, params.model, {"response": ""},
            route="ollama_generate", body=raw,
        )  # fmt: skip
    kind, body = generate_body(
        params, name, options, context_window=_window(adapters), extension=raw.get("switchyard")
    )
    keep = _keeper(adapters, seconds)
    began = time.perf_counter()
    if kind == "chat":
        result: Any = await run_chat(request, body, route="ollama_generate")
    else:
        result = await run_completions(request, body, route="ollama_generate")
    if isinstance(result, ChatReply | CompletionReply):
        await keep()
        text, finish = completion_text(result.completion)
        usage = result.completion.usage
        answer = generate_answer(
            text,
            finish,
            usage if isinstance(usage, Usage) else None,
            params.model,
            time.time(),
            _reply_timing(request),
        )
        return _json(answer, result.headers)
    events = _streamed(request, result.chunks, began, params.model, keep, chat=False)
    return _ndjson(events, result.headers)


def _embed_inputs(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if not all(isinstance(v, str) for v in value):
        raise InvalidRequest("invalid input type", param="input")
    return list(value)


@post(
    "/api/embed",
    status_code=200,
    opt={"request_body": OllamaEmbedRequest},
    summary="Ollama: embeddings",
)
async def embed(request: Request[Any, Any, Any]) -> Response[bytes]:
    params, _ = await _decode(request, OllamaEmbedRequest)
    name, adapters = _resolve(request, params.model)
    check_options(params.options)
    seconds = keep_alive_s(params.keep_alive)
    inputs = _embed_inputs(params.input)
    if params.dimensions is not None and params.dimensions < 0:
        raise InvalidRequest("dimensions must not be negative", param="dimensions")
    if not inputs:
        return _json({"model": params.model, "embeddings": []})
    body: dict[str, Any] = {"model": name, "input": inputs}
    if params.dimensions:
        body["dimensions"] = params.dimensions
    reply, headers = await run_embeddings(request, body, route="ollama_embed")
    await _keeper(adapters, seconds)()
    vectors = [item.embedding for item in sorted(reply.data, key=lambda d: d.index)]
    info = request_info(request.scope)
    answer = {
        "model": params.model,
        "embeddings": vectors,
        "total_duration": int((time.perf_counter() - info.started) * 1e9),
        "prompt_eval_count": reply.usage.prompt_tokens,
    }
    return _json(answer, headers)


@post(
    "/api/embeddings",
    status_code=200,
    opt={"request_body": OllamaEmbeddingsRequest},
    summary="Ollama: embedding (legacy)",
)
async def embeddings(request: Request[Any, Any, Any]) -> Response[bytes]:
    params, _ = await _decode(request, OllamaEmbeddingsRequest)
    name, adapters = _resolve(request, params.model)
    check_options(params.options)
    seconds = keep_alive_s(params.keep_alive)
    if not params.prompt:
        return _json({"embedding": []})
    reply, headers = await run_embeddings(
        request, {"model": name, "input": params.prompt}, route="ollama_embeddings"
    )
    await _keeper(adapters, seconds)()
    return _json({"embedding": reply.data[0].embedding}, headers)


@route("/api/tags", http_method=[HttpMethod.GET, HttpMethod.HEAD], summary="Ollama: models")
async def tags(request: Request[Any, Any, Any]) -> Response[bytes]:
    router = _state(request).router
    listed = []
    for card in allowed_models(request):
        adapters = [d.adapter for d in router.deployments.get(card.id, ())]
        listed.append(models.listed(card.id, card.created, await models.facts_of(adapters)))
    return _json(ListResponse(models=listed))


@post(
    "/api/show",
    status_code=200,
    opt={"request_body": OllamaShowRequest},
    summary="Ollama: model details",
)
async def show(request: Request[Any, Any, Any]) -> Response[bytes]:
    params, _ = await _decode(request, OllamaShowRequest)
    asked = params.model or params.name
    name, adapters = _resolve(request, asked)
    card = next((c for c in allowed_models(request) if c.id == name), None)
    if card is None:
        raise ModelNotFound(f"model '{shown(asked)}' not found", param="model")
    # a listed model without deployments of its own is served by an extension (a
    # persona) through chat, on the model it chooses
    facts = await models.facts_of(adapters)
    return _json(models.show(name, card.created, adapters, facts))


@get("/api/ps", summary="Ollama: loaded models")
async def ps(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = _state(request)
    now = time.time()
    seen: set[str] = set()
    loaded = []
    allowed = _allowed_names(request)
    for name, deployments in state.router.deployments.items():
        if name not in allowed:
            continue
        for deployment in deployments:
            adapter = deployment.adapter
            if not any(m.loaded for m in adapter.local_models()):
                continue
            for entry in models.running(adapter, await adapter.model_facts(), now):
                if entry.name not in seen:
                    seen.add(entry.name)
                    loaded.append(entry)
    return _json(ProcessResponse(models=loaded))


@route("/api/version", http_method=[HttpMethod.GET, HttpMethod.HEAD], summary="Ollama: version")
async def version(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _json({"version": OLLAMA_VERSION}, headers={"x-switchyard-version": __version__})


@route("/", http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False)
async def running(request: Request[Any, Any, Any]) -> Response[bytes]:
    """What Ollama clients probe to find a server: the text Ollama answers."""
    return Response(content=b"Ollama is running", media_type="text/plain; charset=utf-8")


@route(
    ["/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"],
    http_method=[HttpMethod.POST, HttpMethod.DELETE],
    include_in_schema=False,
)
async def manage(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ollama's model management: Switchyard's models come from its configuration."""
    raise SwitchyardError(
        f"{request.url.path} is not supported: the models Switchyard serves come from its "
        "configuration, not from pulls, pushes or copies",
        status=501,
        error_type="not_implemented",
    )


HANDLERS = [chat, generate, embed, embeddings, tags, show, ps, version, running, manage]
