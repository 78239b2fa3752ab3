"""``GET /v1/media/{id}``: files from the media store.

No API key is required: the id is an unguessable capability (see ``proxy.media.store``),
so links work in browsers and ``<img>`` tags, like OpenAI's signed image URLs. A caller
that does present a key is held to ownership: a file of another team is a 404 to it,
and a key that is not valid is a 401, as on every other route.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get
from litestar.response import File

from proxy.app_state import AppState
from proxy.context import request_info
from proxy.errors import NotFound
from proxy.keys import presented_key
from proxy.routes.images import media_services


@get("/media/{media_id:str}", summary="Download a generated file")
async def media_file(request: Request[Any, Any, Any], media_id: str) -> File:
    state: AppState = request.app.state.switchyard
    request_info(request.scope).route = "media"
    store = media_services(state).store
    stored = store.find(media_id)
    if stored is None or not await _may_read(request, state, store.owner(media_id)):
        raise NotFound("No such media file (it may have expired).", param="id")
    return File(
        path=stored.path,
        media_type=stored.content_type,
        filename=stored.path.name,
        content_disposition_type="inline",
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


async def _may_read(request: Request[Any, Any, Any], state: AppState, owner: str | None) -> bool:
    presented = presented_key(request.headers.get)
    if presented is None or owner is None:
        return True
    identity = await state.tenancy.authenticator.identify(presented)
    return identity.is_admin or identity.team_id == owner


def media_router() -> Router:
    return Router(path="/v1", route_handlers=[media_file], tags=["Media"])
