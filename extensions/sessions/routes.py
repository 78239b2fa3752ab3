"""Session API under /v1/switchyard/sessions: list, get with messages, delete.

Every handler works on the caller's own sessions only (scoped by API key).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get

from extensions.sessions.extension import SessionExtension
from proxy.context import request_info
from proxy.errors import NotFound, shown
from proxy.gateway import json_response


def _extension(request: Request[Any, Any, Any]) -> SessionExtension:
    extension = request.app.state.switchyard.extensions.get("session")
    if not isinstance(extension, SessionExtension):
        raise NotFound("Sessions are not enabled on this server.")
    return extension


def _owner(request: Request[Any, Any, Any]) -> str:
    return request_info(request.scope).owner


@get("/switchyard/sessions", summary="List your sessions")
async def list_sessions(request: Request[Any, Any, Any]) -> Response[bytes]:
    sessions = await _extension(request).store.list(_owner(request))
    return json_response({"object": "list", "data": msgspec.to_builtins(sessions)})


@get("/switchyard/sessions/{session_id:str}", summary="Get a session with its messages")
async def get_session(request: Request[Any, Any, Any], session_id: str) -> Response[bytes]:
    store = _extension(request).store
    owner = _owner(request)
    info = await store.get(owner, session_id)
    if info is None:
        raise NotFound(f"No session '{shown(session_id)}'.", param="session_id")
    body = msgspec.to_builtins(info)
    body["messages"] = await store.history(owner, session_id)
    return json_response(body)


@delete("/switchyard/sessions/{session_id:str}", summary="Delete a session", status_code=200)
async def delete_session(request: Request[Any, Any, Any], session_id: str) -> Response[bytes]:
    if not await _extension(request).store.delete(_owner(request), session_id):
        raise NotFound(f"No session '{shown(session_id)}'.", param="session_id")
    return json_response({"id": session_id, "object": "switchyard.session", "deleted": True})


def session_handlers() -> list[Any]:
    return [list_sessions, get_session, delete_session]
