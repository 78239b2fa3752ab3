"""``GET /v1/media/{id}``: files from the media store.

No API key is required: the id is an unguessable capability (see ``proxy.media.store``),
so links work in browsers and ``<img>`` tags, like OpenAI's signed image URLs.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get
from litestar.response import File

from proxy.context import request_info
from proxy.errors import NotFound
from proxy.routes.images import media_services
from proxy.app_state import AppState


@get("/media/{media_id:str}", summary="Download a generated file")
async def media_file(request: Request[Any, Any, Any], media_id: str) -> File:
    state: AppState = request.app.state.switchyard
    request_info(request.scope).route = "media"
    stored = media_services(state).store.find(media_id)
    if stored is None:
        raise NotFound("No such media file (it may have expired).", param="id")
    return File(
        path=stored.path,
        media_type=stored.content_type,
        filename=stored.path.name,
        content_disposition_type="inline",
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def media_router() -> Router:
    return Router(path="/v1", route_handlers=[media_file], tags=["Media"])
