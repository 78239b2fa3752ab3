"""The upstream HTTP clients, owned by the app lifespan.

The shared ``httpx.AsyncClient`` serves everything off the hot path (forms, audio,
ComfyUI, tools). httpx's own connection pool degrades under many concurrent
connections, so with ``transport: aiohttp`` (the default) it runs on aiohttp's pool via
httpx-aiohttp. The hot path (JSON chat/completions/embeddings) uses the transport from
``build_json_transport``; see ``adapters.transport`` for why.

No upstream client keeps cookies: one client serves every caller, so a ``Set-Cookie``
from an upstream would otherwise be replayed on later requests made for other
callers. httpx keeps a cookie jar per client and aiohttp one per session; both are
given jars that store nothing.
"""

from __future__ import annotations

from http.cookiejar import CookieJar, CookiePolicy
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from adapters.transport import AiohttpTransport as NativeAiohttp
from adapters.transport import HttpxTransport, JsonTransport
from proxy.settings import HttpConfig


class _NoCookies(CookiePolicy):
    """A policy that neither stores a cookie nor returns one."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


def cookieless_jar() -> CookieJar:
    """A cookie jar that stays empty whatever responses set."""
    return CookieJar(policy=_NoCookies())


class _CookielessAiohttpTransport(AiohttpTransport):
    """httpx-aiohttp's transport on an aiohttp session without a cookie jar (the
    session it builds itself has aiohttp's default ``CookieJar``)."""

    def get_client(self) -> aiohttp.ClientSession:
        limit = self.limits.max_connections
        connector = aiohttp.TCPConnector(
            limit=0 if limit is None else limit,  # aiohttp's 0 is httpx's None: no limit
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def build_http_client(config: HttpConfig) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_keepalive_connections,
        keepalive_expiry=config.keepalive_expiry_s,
    )
    timeout = httpx.Timeout(600.0, connect=config.connect_timeout_s)
    transport: httpx.AsyncBaseTransport
    if config.transport == "aiohttp":
        transport = _CookielessAiohttpTransport(limits=limits, trust_env=False)
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, trust_env=False, cookies=cookieless_jar()
    )


def build_json_transport(config: HttpConfig, client: httpx.AsyncClient) -> JsonTransport:
    if config.transport == "aiohttp":
        return NativeAiohttp(
            max_connections=config.max_connections, keepalive_s=config.keepalive_expiry_s
        )
    return HttpxTransport(client)
