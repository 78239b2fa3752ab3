"""Cohere's v2 rerank, ``POST /v2/rerank``, for ``cohere.ClientV2``.

Cohere's current SDK client (``ClientV2``) posts to ``/v2/rerank``; the v1 client
(``cohere.Client``) posts to ``/v1/rerank``, which is Switchyard's own route. Both take
the same request (v2 sends ``documents`` as strings only, and ``max_tokens_per_doc``,
which is forwarded to upstreams with ``/rerank`` and otherwise ignored) and read the
same answer (``id``, ``results: [{index, relevance_score}]``, ``meta.billed_units``),
so this route is ``/v1/rerank`` served again: the gateway's ``RERANK`` endpoint, with
its tenancy, limits, usage and metrics (route label ``rerank``). Nothing is translated.

Errors on ``/v2/rerank`` have Cohere's shape, ``{"message": "..."}``, with the same
statuses (Cohere's SDK raises ``BadRequestError``, ``NotFoundError``... from them).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
from litestar import Request, Response, post

from proxy.app_state import AppState
from proxy.dialects import Dialect
from proxy.errors import SwitchyardError
from proxy.gateway import RERANK
from proxy.schemas.rerank import RerankRequest
from proxy.settings import Settings

PATH = "/v2/rerank"
_encode = msgspec.json.Encoder().encode


@post(
    PATH,
    summary="Rerank documents by relevance to a query (Cohere v2)",
    status_code=200,
    opt={"request_body": RerankRequest},
    tags=["Cohere"],
)
async def rerank_v2(request: Request[Any, Any, Any]) -> Response[Any]:
    state: AppState = request.app.state.switchyard
    return await state.gateway.serve(RERANK, request)


class CohereDialect(Dialect):
    name = "cohere"
    prefixes: ClassVar[tuple[str, ...]] = (PATH,)
    identified_prefixes: ClassVar[tuple[str, ...]] = (PATH,)

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        return [rerank_v2]

    @classmethod
    def render_error(cls, error: SwitchyardError) -> tuple[int, bytes, dict[str, str]]:
        return error.http_status, _encode({"message": error.message}), error.headers
