"""Absolute URLs for stored media.

Clients receive ``url`` fields they can open from anywhere, so the base must be the
address the client used, not the one the server bound. In order of preference: the
configured ``server.public_base_url``; ``X-Forwarded-Proto``/``X-Forwarded-Host`` (and
``X-Forwarded-Prefix``) when ``server.trust_forwarded_headers`` says a reverse proxy
sets them (otherwise any client could make the server hand out links to another
host); the request's own scheme and ``Host``. Header values are checked against
strict patterns, so a forged header can never inject text into a URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from proxy.settings import ServerConfig

_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
_PREFIX = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)*")  # no "." or ".." segments


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _first(value: str | None) -> str | None:
    """The first entry of a proxy header (each hop may append ``, value``)."""
    if value is None:
        return None
    return value.split(",")[0].strip() or None


def base_url(scope: Mapping[str, Any], server: ServerConfig) -> str:
    """The ``scheme://host[/prefix]`` clients should use to reach this server."""
    if server.public_base_url:
        return server.public_base_url.rstrip("/")
    headers = _headers(scope)
    scheme = str(scope.get("scheme") or "http")
    host = headers.get("host")
    prefix = ""
    if server.trust_forwarded_headers:
        proto = (_first(headers.get("x-forwarded-proto")) or "").lower()
        if proto in ("http", "https"):
            scheme = proto
        host = _first(headers.get("x-forwarded-host")) or host
        given = (_first(headers.get("x-forwarded-prefix")) or "").rstrip("/")
        if _PREFIX.fullmatch(given):
            prefix = given
    if not host or not _HOST.fullmatch(host):
        address = scope.get("server") or ("127.0.0.1", 80)
        host = f"{address[0]}:{address[1]}"
    return f"{scheme}://{host}{prefix}"


def media_url(base: str, media_id: str) -> str:
    return f"{base}/v1/media/{media_id}"
