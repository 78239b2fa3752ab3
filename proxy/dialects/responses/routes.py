"""The Responses API's routes: create (translated through the gateway, or passed
through to a native upstream), retrieve, delete, and list input items."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post

from proxy.app_state import AppState
from proxy.context import request_info
from proxy.dialects.bridge import ChatReply, event_stream, is_native, passthrough, run_chat
from proxy.dialects.responses.events import (
    EventWriter,
    NativeEvents,
    shutdown_frame,
    sse_frame,
    translate_stream,
)
from proxy.dialects.responses.schemas import Response as ResponseObject
from proxy.dialects.responses.schemas import ResponsesRequest, input_items, tool_params
from proxy.dialects.responses.translate import (
    chat_body,
    input_item_records,
    new_id,
    now,
    output_messages,
    response_shell,
    to_response,
)
from proxy.errors import InvalidRequest, NotFound, SwitchyardError, shown
from proxy.gateway import json_response
from proxy.responses import BytesResponse
from proxy.schemas.base import decode_request
from proxy.state.records import StoredResponse

log = logging.getLogger("switchyard.responses")
ROUTE = "responses"
WARNING_HEADER = "x-switchyard-warning"
_encode = msgspec.json.Encoder().encode
_decode_list = msgspec.json.Decoder(list[dict[str, Any]]).decode


def _state(request: Request[Any, Any, Any]) -> AppState:
    return request.app.state.switchyard  # type: ignore[no-any-return]


def _owner(request: Request[Any, Any, Any]) -> tuple[str, str]:
    info = request_info(request.scope)
    return info.team_id, info.owner


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"Response with id '{shown(response_id)}' not found.", param=param)


def _takes_reasoning(state: AppState, model: str) -> bool:
    """Whether every deployment of ``model`` forwards the request to an upstream (which
    then takes ``reasoning_effort`` or says why not); a model run in process does not."""
    try:
        deployments = state.gateway.router.deployments_of(model.split("+", 1)[0])
    except SwitchyardError:
        return False
    return bool(deployments) and not any(d.adapter.holds_models_in_process for d in deployments)


async def _save(
    request: Request[Any, Any, Any],
    response: ResponseObject,
    history: list[dict[str, Any]],
    turn: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> None:
    team_id, key_id = _owner(request)
    await _state(request).store.responses.add(
        StoredResponse(
            id=response.id,
            team_id=team_id,
            key_id=key_id,
            created_at=float(response.created_at),
            model=response.model,
            previous_response_id=response.previous_response_id,
            response=_encode(response),
            input_items=_encode(records),
            messages=_encode([*history, *turn, *output_messages(response)]),
        )
    )


def _native_stream(
    request: Request[Any, Any, Any],
) -> Callable[[AsyncIterator[bytes]], Response[Any]]:
    """How a native upstream's events are answered: forwarded, and a failure after they
    began ends them with an ``error`` event and is recorded as the request's status."""
    info = request_info(request.scope)

    def failed(failure: SwitchyardError) -> None:
        info.failure = failure

    def respond(events: AsyncIterator[bytes]) -> Response[Any]:
        native = NativeEvents(events, failed)
        return event_stream(native.stream(), {}, shutdown_frame=native.shutdown_frame)

    return respond


@post(
    "/v1/responses",
    summary="Create a model response",
    status_code=200,
    opt={"request_body": ResponsesRequest},
)
async def create_response(request: Request[Any, Any, Any]) -> Response[Any]:
    raw = await request.body()
    envelope = decode_request(raw, ResponsesRequest)
    params, client_body = envelope.params, envelope.body
    if is_native(request, params.model, ROUTE, client_body):
        return await passthrough(
            request, ROUTE, raw, route=ROUTE, stream_response=_native_stream(request)
        )
    params.refuse_unsupported()
    items = input_items(params)
    tools = tool_params(params)
    if not items:
        raise InvalidRequest("'input' must not be empty.", param="input")
    history: list[dict[str, Any]] = []
    previous = params.previous_response_id
    if isinstance(previous, str):
        team_id, key_id = _owner(request)
        stored = await _state(request).store.responses.get(team_id, key_id, previous)
        if stored is None:
            raise _not_found(previous, "previous_response_id")
        history = _decode_list(stored.messages)
    body, turn, warnings = chat_body(
        params,
        items,
        tools,
        client_body=client_body,
        history=history,
        takes_reasoning=_takes_reasoning(_state(request), params.model),
    )
    shell = response_shell(params, client_body, new_id("resp"), now())
    records = input_item_records(items)
    result = await run_chat(request, body, route=ROUTE)
    headers = dict(result.headers)
    if warnings:
        headers[WARNING_HEADER] = "; ".join(warnings)
    if isinstance(result, ChatReply):
        response = to_response(result.completion, shell)
        if params.stored:
            await _save(request, response, history, turn, records)
        return BytesResponse(_encode(response), headers=headers)
    writer = EventWriter(shell)
    sent = -1

    async def frames() -> AsyncIterator[bytes]:
        nonlocal sent
        async with aclosing(translate_stream(result.chunks, writer)) as events:  # type: ignore[type-var]
            async for event in events:
                kind = event["type"]
                if params.stored and kind in ("response.completed", "response.incomplete"):
                    try:
                        await _save(request, writer.response, history, turn, records)
                    except Exception:  # the answer still reaches the client; say why not stored
                        log.exception("could not store response %s", writer.response.id)
                sent = event["sequence_number"]
                yield sse_frame(event)

    return event_stream(frames(), headers, shutdown_frame=lambda: shutdown_frame(sent + 1))


@get("/v1/responses/{response_id:str}", summary="Get a stored response")
async def get_response(request: Request[Any, Any, Any], response_id: str) -> Response[bytes]:
    team_id, key_id = _owner(request)
    stored = await _state(request).store.responses.get(team_id, key_id, response_id)
    if stored is None:
        raise _not_found(response_id)
    return BytesResponse(stored.response)


@delete("/v1/responses/{response_id:str}", summary="Delete a stored response", status_code=200)
async def delete_response(request: Request[Any, Any, Any], response_id: str) -> Response[bytes]:
    team_id, key_id = _owner(request)
    if not await _state(request).store.responses.delete(team_id, key_id, response_id):
        raise _not_found(response_id)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


@get("/v1/responses/{response_id:str}/input_items", summary="List a response's input items")
async def list_input_items(request: Request[Any, Any, Any], response_id: str) -> Response[bytes]:
    """Paged as OpenAI pages it: ``limit`` (1-100, default 20), ``order`` (``desc`` by
    default), ``after`` / ``before`` an item id."""
    team_id, key_id = _owner(request)
    stored = await _state(request).store.responses.get(team_id, key_id, response_id)
    if stored is None:
        raise _not_found(response_id)
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be asc or desc.", param="order")
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        raise InvalidRequest("'limit' must be an integer.", param="limit") from None
    if not 1 <= limit <= 100:
        raise InvalidRequest("'limit' must be between 1 and 100.", param="limit")
    items = _decode_list(stored.input_items)
    if order == "desc":
        items.reverse()
    for name in ("after", "before"):
        marker = query.get(name)
        if marker is None:
            continue
        ids = [item.get("id") for item in items]
        if marker not in ids:
            raise InvalidRequest(f"No input item '{shown(marker)}'.", param=name)
        at = ids.index(marker)
        items = items[at + 1 :] if name == "after" else items[:at]
    page = items[:limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


def handlers() -> list[Any]:
    return [create_response, get_response, delete_response, list_input_items]
