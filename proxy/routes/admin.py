"""The admin API under ``/v1/switchyard/admin``: teams, virtual keys, usage and audit
(and, beside it, ``/v1/switchyard/me`` for any caller).

Only admin identities may call it (``admin_guard``, after the auth guard that sets the
identity). Handlers parse their own query parameters so that a bad value is a 400 that
names the parameter, and an unknown parameter (a misspelt filter, which would otherwise
widen the answer silently) is refused the same way.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from proxy.errors import InvalidRequest, PermissionDenied, shown
from proxy.gateway import json_response
from proxy.reload import ReloadRequest
from proxy.routes.tenancy import actor_of, admin_service, identity_of, me_handler, tenancy_of
from proxy.schemas.admin import (
    AuditPage,
    CacheFlushed,
    KeyCreate,
    KeyList,
    KeyRotate,
    KeyUpdate,
    TeamCreate,
    TeamDeleted,
    TeamList,
    TeamUpdate,
    UsageList,
    UsageRequestPage,
    audit_object,
    cache_stats,
    decode_admin,
    key_object,
    team_object,
    usage_group,
    usage_request,
)
from proxy.state.records import UsageFilter, UsageGrouping

PREFIX = "/v1/switchyard"
GROUPINGS: tuple[UsageGrouping, ...] = ("day", "model", "key", "team")
MAX_PAGE = 1000
DEFAULT_PAGE = 100
_FILTERS = ("team_id", "key_id", "model", "since", "until")


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Refuse callers that are not admins (the auth guard before it set the identity)."""
    identity = identity_of(connection.scope)
    if identity is None or not identity.is_admin:
        raise PermissionDenied("This key is not an admin key.")


Req = Request[Any, Any, Any]


def _query(request: Req, allowed: tuple[str, ...]) -> dict[str, str]:
    params = request.query_params
    for name in params:
        if name not in allowed:
            raise InvalidRequest(
                f"Unknown query parameter '{shown(name)}' (expected one of: {', '.join(allowed)}).",
                param=shown(name),
            )
        if not params[name].isprintable():
            raise InvalidRequest(f"{name} holds a control character.", param=name)
    return {name: params[name] for name in params}


def _number(query: dict[str, str], name: str) -> float | None:
    if name not in query:
        return None
    try:
        value = float(query[name])
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InvalidRequest(
            f"{name} must be a time in Unix seconds, not '{shown(query[name])}'.", param=name
        )
    return value


def _limit(query: dict[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequest(
            f"limit must be a whole number from 1 to {MAX_PAGE}, not '{shown(raw)}'.",
            param="limit",
        )
    return int(raw)


def _usage_filter(query: dict[str, str]) -> UsageFilter:
    where = UsageFilter(
        team_id=query.get("team_id"),
        key_id=query.get("key_id"),
        model=query.get("model"),
        since=_number(query, "since"),
        until=_number(query, "until"),
    )
    if where.since is not None and where.until is not None and where.until < where.since:
        raise InvalidRequest("until must not be before since.", param="until")
    return where


def _group_by(query: dict[str, str]) -> UsageGrouping | None:
    raw = query.get("group_by")
    if raw is None:
        return None
    for grouping in GROUPINGS:
        if raw == grouping:
            return grouping
    raise InvalidRequest(
        f"group_by must be one of {', '.join(GROUPINGS)}, not '{shown(raw)}'.", param="group_by"
    )


def _flag(query: dict[str, str], name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in {"true", "false", "1", "0"}:
        raise InvalidRequest(f"{name} must be true or false, not '{shown(raw)}'.", param=name)
    return raw in {"true", "1"}


# Teams


@post("/teams", summary="Create a team", status_code=200, opt={"request_body": TeamCreate})
async def create_team(request: Req) -> Response[bytes]:
    body = decode_admin(await request.body(), TeamCreate)
    team = await admin_service(request).create_team(actor_of(request.scope), body)
    return json_response(team_object(team))


@get("/teams", summary="List teams")
async def list_teams(request: Req) -> Response[bytes]:
    _query(request, ())
    teams = await admin_service(request).list_teams()
    return json_response(TeamList(data=[team_object(t) for t in teams]))


@get("/teams/{team_id:str}", summary="Retrieve a team")
async def get_team(request: Req, team_id: str) -> Response[bytes]:
    return json_response(team_object(await admin_service(request).get_team(team_id)))


@patch(
    "/teams/{team_id:str}",
    summary="Change a team's name, limits or metadata",
    opt={"request_body": TeamUpdate},
)
async def update_team(request: Req, team_id: str) -> Response[bytes]:
    body = decode_admin(await request.body(), TeamUpdate)
    team = await admin_service(request).update_team(actor_of(request.scope), team_id, body)
    return json_response(team_object(team))


@delete("/teams/{team_id:str}", summary="Delete a team and revoke its keys", status_code=200)
async def delete_team(request: Req, team_id: str) -> Response[bytes]:
    revoked = await admin_service(request).delete_team(actor_of(request.scope), team_id)
    return json_response(TeamDeleted(id=team_id, revoked_keys=revoked))


# Keys


@post(
    "/keys",
    summary="Create a virtual key (its secret is shown only in this answer)",
    status_code=200,
    opt={"request_body": KeyCreate},
)
async def create_key(request: Req) -> Response[bytes]:
    body = decode_admin(await request.body(), KeyCreate)
    key, secret = await admin_service(request).create_key(actor_of(request.scope), body)
    return json_response(key_object(key, secret))


@get("/keys", summary="List virtual keys (never their secrets)")
async def list_keys(request: Req) -> Response[bytes]:
    query = _query(request, ("team_id", "include_revoked"))
    keys = await admin_service(request).list_keys(
        query.get("team_id"), include_revoked=_flag(query, "include_revoked")
    )
    return json_response(KeyList(data=[key_object(k) for k in keys]))


@get("/keys/{key_id:str}", summary="Retrieve a virtual key")
async def get_key(request: Req, key_id: str) -> Response[bytes]:
    return json_response(key_object(await admin_service(request).get_key(key_id)))


@patch(
    "/keys/{key_id:str}",
    summary="Change a key's name, role, limits, expiry or metadata",
    opt={"request_body": KeyUpdate},
)
async def update_key(request: Req, key_id: str) -> Response[bytes]:
    body = decode_admin(await request.body(), KeyUpdate)
    key = await admin_service(request).update_key(actor_of(request.scope), key_id, body)
    return json_response(key_object(key))


@delete("/keys/{key_id:str}", summary="Revoke a virtual key (at once)", status_code=200)
async def revoke_key(request: Req, key_id: str) -> Response[bytes]:
    key = await admin_service(request).revoke_key(actor_of(request.scope), key_id)
    return json_response(key_object(key))


@post(
    "/keys/{key_id:str}/rotate",
    summary="Give a key a new secret; the old one works for grace_s more (default 300)",
    status_code=200,
    opt={"request_body": KeyRotate},
)
async def rotate_key(request: Req, key_id: str) -> Response[bytes]:
    raw = await request.body()
    body = decode_admin(raw, KeyRotate) if raw.strip() else KeyRotate()
    service = admin_service(request)
    key, secret = await service.rotate_key(actor_of(request.scope), key_id, body.grace_s)
    return json_response(key_object(key, secret))


# Usage and audit


@get("/usage", summary="Usage totals, optionally grouped by day, model, key or team")
async def usage(request: Req) -> Response[bytes]:
    query = _query(request, (*_FILTERS, "group_by"))
    where, group_by = _usage_filter(query), _group_by(query)
    tenancy = tenancy_of(request)
    await tenancy.settled()
    await tenancy.usage.flush()
    totals = await admin_service(request).usage_totals(where, group_by)
    return json_response(UsageList(data=[usage_group(t) for t in totals]))


@get("/usage/requests", summary="Accounted requests, newest first, paged")
async def usage_requests(request: Req) -> Response[bytes]:
    query = _query(request, (*_FILTERS, "limit", "cursor"))
    where, limit = _usage_filter(query), _limit(query)
    tenancy = tenancy_of(request)
    await tenancy.settled()
    await tenancy.usage.flush()
    rows, cursor = await admin_service(request).usage_requests(where, limit, query.get("cursor"))
    page = UsageRequestPage(
        data=[usage_request(r) for r in rows], has_more=cursor is not None, next_cursor=cursor
    )
    return json_response(page)


@get("/audit", summary="Audit log of admin changes, newest first, paged")
async def audit(request: Req) -> Response[bytes]:
    query = _query(request, ("limit", "cursor", "target"))
    entries, cursor = await admin_service(request).audit_entries(
        _limit(query), query.get("cursor"), query.get("target")
    )
    page = AuditPage(
        data=[audit_object(e) for e in entries], has_more=cursor is not None, next_cursor=cursor
    )
    return json_response(page)


def _response_cache(request: Req) -> Any:
    return request.app.state.switchyard.gateway.cache


@get("/cache", summary="The response cache: entries, bytes and hit rate by model")
async def cache_summary(request: Req) -> Response[bytes]:
    _query(request, ())
    cache = _response_cache(request)
    if cache is None:
        return json_response(cache_stats(None, {}))
    return json_response(cache_stats(cache.backend_name, await cache.stats()))


@delete(
    "/cache", summary="Flush the response cache (all, or by model and/or team)", status_code=200
)
async def cache_flush(request: Req) -> Response[bytes]:
    query = _query(request, ("model", "team"))
    model, team = query.get("model"), query.get("team")
    for name, value in (("model", model), ("team", team)):
        if value is not None and not value:
            raise InvalidRequest(f"{name} must not be empty.", param=name)
    cache = _response_cache(request)
    removed = 0 if cache is None else await cache.flush(team=team, model=model)
    flushed = CacheFlushed(removed=removed, model=model, team=team)
    details = {"removed": removed, "model": model, "team": team}
    await admin_service(request).record(actor_of(request.scope), "cache.flush", "cache", details)
    return json_response(flushed)


# Configuration


@post(
    "/reload",
    summary="Re-read the config file: new requests use it, running ones finish as they began",
    status_code=200,
    opt={"request_body": ReloadRequest},
)
async def reload_config(request: Req) -> Response[bytes]:
    query = _query(request, ("broadcast",))
    raw = await request.body()
    body = decode_admin(raw, ReloadRequest) if raw.strip() else ReloadRequest()
    broadcast = body.broadcast or _flag(query, "broadcast")
    reloader = request.app.state.switchyard.reloader
    report = await reloader.reload_for_request(broadcast=broadcast)
    details = {"generation": report.generation, "models": msgspec.to_builtins(report.models)}
    details["broadcast"] = report.broadcast
    await admin_service(request).record(actor_of(request.scope), "config.reload", "config", details)
    return json_response(report)


def admin_router(guards: list[Any] | None = None) -> Router:
    """``/v1/switchyard``: ``/me`` for any caller and the admin API under ``/admin``.

    ``guards`` authenticate (and set the identity) before the admin check."""
    admin = Router(
        path="/admin",
        route_handlers=[
            create_team,
            list_teams,
            get_team,
            update_team,
            delete_team,
            create_key,
            list_keys,
            get_key,
            update_key,
            revoke_key,
            rotate_key,
            usage,
            usage_requests,
            audit,
            cache_summary,
            cache_flush,
            reload_config,
        ],
        guards=[admin_guard],
        tags=["Switchyard admin"],
    )
    return Router(
        path=PREFIX,
        route_handlers=[admin, me_handler],
        guards=list(guards or ()),
        tags=["Switchyard"],
    )
