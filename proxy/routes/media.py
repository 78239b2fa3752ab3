"""``GET /v1/media/{id}``: files from the media store, on any replica.

No API key is required: the id is an unguessable capability (see ``proxy.media.store``),
so links work in browsers and ``<img>`` tags, like OpenAI's signed image URLs. A caller
that does present a key is held to ownership: a file of another team is a 404 to it,
and a key that is not valid is a 401, as on every other route. The id is looked up in
the state store (owner, type, expiry); the bytes are streamed from the backend.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get
from litestar.response import Stream

from proxy.app_state import AppState
from proxy.context import request_info
from proxy.errors import NotFound
from proxy.keys import presented_key
from proxy.media.store import MediaStore, StoredMedia
from proxy.routes.images import media_services

_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


@get("/media/{media_id:str}", summary="Download a generated file")
async def media_file(request: Request[Any, Any, Any], media_id: str) -> Stream:
    state: AppState = request.app.state.switchyard
    request_info(request.scope).route = "media"
    store = media_services(state).store
    stored = await _lookup(request, state, store, media_id)
    response = None if stored is None else await stream_media(store, stored, media_id, _HEADERS)
    if response is None:
        raise NotFound("No such media file (it may have expired).", param="id")
    return response


async def _lookup(
    request: Request[Any, Any, Any], state: AppState, store: MediaStore, media_id: str
) -> StoredMedia | None:
    """Without a key, by the id alone; with a key, the caller's team's file (an admin's
    key reads any)."""
    presented = presented_key(request.headers.get)
    if presented is None:
        return await store.find_by_capability(media_id)
    identity = await state.tenancy.authenticator.identify(presented)
    if identity.is_admin:
        return await store.find_by_capability(media_id)
    return await store.find(identity.team_id, media_id)


async def stream_media(
    store: MediaStore, stored: StoredMedia, name: str, headers: dict[str, str] | None = None
) -> Stream | None:
    """The file's bytes as a response named ``name``; ``None`` when they are gone."""
    opened = await store.open(stored)
    if opened is None:
        return None
    extension = stored.storage_key.rpartition(".")[2]
    return Stream(
        opened.chunks,
        media_type=stored.content_type,
        headers={
            **(headers or {}),
            "Content-Length": str(opened.size),
            "Content-Disposition": f'inline; filename="{name}.{extension}"',
        },
    )


def media_router() -> Router:
    return Router(path="/v1", route_handlers=[media_file], tags=["Media"])
