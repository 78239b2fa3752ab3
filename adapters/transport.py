"""JSON over HTTP to upstreams: the hot path's small transport interface.

Every chat, completion and embedding request to a remote model goes through here, so
its cost is the gateway's overhead. Two implementations sit behind one interface:

- ``AiohttpTransport`` (the default, ``http.transport: aiohttp``) talks to aiohttp's
  client directly. bench/overhead.py measured the httpx request/response layer on top
  of aiohttp at roughly 300 us of CPU per request on this project's 2-core machine —
  more than the rest of the gateway — so the hot path skips it.
- ``HttpxTransport`` (``http.transport: httpx``) uses the shared ``httpx.AsyncClient``.

Each request carries the client request's ``x-request-id`` (and, when tracing, its
``traceparent``) and is an ``upstream`` span; for a stream the span ends with the
response head. Both raise the gateway's typed errors for transport failures
(``UpstreamUnavailable``, ``UpstreamTimeout``); HTTP statuses are returned for the caller
to map. Everything that is not the hot path (forms, audio, ComfyUI, tools) uses the shared
httpx client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx

from proxy.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.telemetry import span, upstream_headers

log = logging.getLogger("switchyard.transport")

#: After a stream's [DONE], at most this much more is read so the connection can be reused.
_DRAIN_LIMIT = 64 * 1024
_DRAIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float
    """Longest wait for any single read (a whole answer, or the gap between events)."""

    def for_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.read, connect=self.connect, pool=self.connect)


class StreamingReply(Protocol):
    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def release(self, *, complete: bool) -> None:
        """Give the connection back: when the body was read to its logical end, finish
        reading it in the background so the connection is reused; otherwise close it."""


class JsonTransport(Protocol):
    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeouts: Timeouts, model: str
    ) -> tuple[int, Mapping[str, str], bytes]: ...

    async def stream(
        self, url: str, content: bytes, headers: Mapping[str, str], timeouts: Timeouts, model: str
    ) -> StreamingReply: ...

    async def aclose(self) -> None: ...


_background: set[asyncio.Task[None]] = set()


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` detached, keeping a reference so it is not collected mid-way."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


# ------------------------------------------------------------------ aiohttp


@contextmanager
def _aiohttp_errors(model: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        raise UpstreamTimeout(f"The upstream for '{model}' timed out.") from None
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(
            f"The upstream for '{model}' is unreachable ({type(exc).__name__})."
        ) from None


class _AiohttpReply:
    __slots__ = ("_model", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, model: str) -> None:
        self._response = response
        self._model = model
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        with _aiohttp_errors(self._model):
            return await self._response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        with _aiohttp_errors(self._model):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def release(self, *, complete: bool) -> None:
        if complete and not self._response.content.at_eof():
            _in_background(self._drain())
        else:
            self._response.release() if complete else self._response.close()

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                drained = 0
                async for chunk in self._response.content.iter_any():
                    drained += len(chunk)
                    if drained > _DRAIN_LIMIT:
                        self._response.close()
                        return
            self._response.release()
        except (TimeoutError, aiohttp.ClientError):
            self._response.close()


class AiohttpTransport:
    def __init__(self, *, max_connections: int, keepalive_s: float) -> None:
        connector = aiohttp.TCPConnector(
            limit=max_connections, keepalive_timeout=keepalive_s, ttl_dns_cache=60
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=True,
        )

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.connect,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeouts: Timeouts, model: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        with span("upstream", model=model) as traced, _aiohttp_errors(model):
            async with self.session.post(
                url,
                data=content,
                headers=upstream_headers(headers),
                timeout=self._timeout(timeouts),
            ) as response:
                traced.set("http.response.status_code", response.status)
                return response.status, response.headers, await response.read()

    async def stream(
        self, url: str, content: bytes, headers: Mapping[str, str], timeouts: Timeouts, model: str
    ) -> StreamingReply:
        with span("upstream", model=model, stream=True) as traced, _aiohttp_errors(model):
            response = await self.session.post(
                url,
                data=content,
                headers=upstream_headers(headers),
                timeout=self._timeout(timeouts),
            )
            traced.set("http.response.status_code", response.status)
        return _AiohttpReply(response, model)

    async def aclose(self) -> None:
        await self.session.close()


# -------------------------------------------------------------------- httpx


def _is_timeout(exc: httpx.TimeoutException) -> bool:
    """httpx-aiohttp reports every aiohttp connection error (refused, reset) as
    ``ConnectTimeout``; the aiohttp exception it wraps says what really happened."""
    cause = exc.__cause__
    return not isinstance(cause, aiohttp.ClientError) or isinstance(cause, TimeoutError)


@contextmanager
def mapped_transport_errors(model: str) -> Iterator[None]:
    """Translate httpx's transport exceptions into the gateway's typed errors.

    Messages name the model, not the upstream's address: clients need not learn the
    deployment's internal hosts (the access log names the deployment).
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        if _is_timeout(exc):
            raise UpstreamTimeout(f"The upstream for '{model}' timed out.") from None
        raise UpstreamUnavailable(
            f"The upstream for '{model}' is unreachable ({type(exc.__cause__).__name__})."
        ) from None
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(
            f"The upstream for '{model}' is unreachable ({type(exc).__name__})."
        ) from None


class _HttpxReply:
    __slots__ = ("_body", "_model", "_response", "headers", "status")

    def __init__(self, response: httpx.Response, model: str) -> None:
        self._response = response
        self._model = model
        self.status = response.status_code
        self.headers = response.headers
        # One iterator for the whole body: httpx cannot start a second one, and the
        # drain after [DONE] continues where the events stopped.
        self._body = response.aiter_bytes()

    async def read(self) -> bytes:
        with mapped_transport_errors(self._model):
            return await self._response.aread()

    async def chunks(self) -> AsyncIterator[bytes]:
        with mapped_transport_errors(self._model):
            async for chunk in self._body:
                yield chunk

    async def release(self, *, complete: bool) -> None:
        if complete:
            _in_background(self._drain())
        else:
            await self._response.aclose()

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                drained = 0
                async for chunk in self._body:
                    drained += len(chunk)
                    if drained > _DRAIN_LIMIT:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass
        finally:
            await self._response.aclose()


class HttpxTransport:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def _request(
        self, url: str, content: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> httpx.Request:
        return self.client.build_request(
            "POST",
            url,
            content=content,
            headers=upstream_headers(headers),
            timeout=timeouts.for_httpx(),
        )

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeouts: Timeouts, model: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        with span("upstream", model=model) as traced, mapped_transport_errors(model):
            response = await self.client.send(self._request(url, content, headers, timeouts))
            traced.set("http.response.status_code", response.status_code)
            return response.status_code, response.headers, await response.aread()

    async def stream(
        self, url: str, content: bytes, headers: Mapping[str, str], timeouts: Timeouts, model: str
    ) -> StreamingReply:
        with span("upstream", model=model, stream=True) as traced, mapped_transport_errors(model):
            request = self._request(url, content, headers, timeouts)
            response = await self.client.send(request, stream=True)
            traced.set("http.response.status_code", response.status_code)
        return _HttpxReply(response, model)

    async def aclose(self) -> None:
        """The shared client belongs to the lifespan, which closes it."""
