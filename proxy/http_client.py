"""The upstream HTTP clients, owned by the app lifespan.

The shared ``httpx.AsyncClient`` serves everything off the hot path (forms, audio,
ComfyUI, tools). httpx's own connection pool degrades under many concurrent
connections, so with ``transport: aiohttp`` (the default) it runs on aiohttp's pool via
httpx-aiohttp. The hot path (JSON chat/completions/embeddings) uses the transport from
``build_json_transport``; see ``adapters.transport`` for why.
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport

from adapters.transport import AiohttpTransport as NativeAiohttp
from adapters.transport import HttpxTransport, JsonTransport
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


def build_json_transport(config: HttpConfig, client: httpx.AsyncClient) -> JsonTransport:
    if config.transport == "aiohttp":
        return NativeAiohttp(
            max_connections=config.max_connections, keepalive_s=config.keepalive_expiry_s
        )
    return HttpxTransport(client)
