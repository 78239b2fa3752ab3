"""API-key authentication for /v1/* (and /metrics when configured).

Keys are accepted as ``Authorization: Bearer <key>`` or as an ``api-key`` header (what
Azure OpenAI clients send). Presented and configured keys are compared as SHA-256
digests with ``hmac.compare_digest`` against every configured key, so neither the
length nor the content of a key leaks through timing. A request's key is identified
downstream only by a short digest (``key_id``), never by the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from proxy.context import request_info
from proxy.errors import AuthenticationFailed
from proxy.keys import key_id, presented_key


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyChecker:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(k) for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def verify(self, presented: str | None) -> bool:
        if presented is None:
            return False
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched

    async def guard(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        """Litestar guard: reject the request unless it carries a configured key.

        ``async`` on purpose: Litestar runs a synchronous guard in a worker thread, which
        cost more than the check itself (measured with bench/overhead.py).
        """
        presented = presented_key(connection.headers.get)
        if presented is None:
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
        if not self.verify(presented):
            raise AuthenticationFailed("Incorrect API key provided.")
        request_info(connection.scope).verified_key_id = key_id(presented)
