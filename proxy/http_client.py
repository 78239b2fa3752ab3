"""The one shared upstream HTTP client, owned by the app lifespan.

httpx is the API every adapter uses. Its default connection pool degrades under many
concurrent connections; with ``transport: aiohttp`` (the default) requests go through
aiohttp's pool via httpx-aiohttp, which bench/overhead.py measures several times
faster at concurrency 64. ``transport: httpx`` keeps httpx's own pool.
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport

from proxy.settings import HttpConfig


def build_http_client(config: HttpConfig) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_keepalive_connections,
        keepalive_expiry=config.keepalive_expiry_s,
    )
    timeout = httpx.Timeout(600.0, connect=config.connect_timeout_s)
    transport: httpx.AsyncBaseTransport
    if config.transport == "aiohttp":
        transport = AiohttpTransport(limits=limits, trust_env=False)
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)
