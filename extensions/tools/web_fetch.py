"""``web_fetch``: GET a public URL and hand the model its readable text.

Safety, hop by hop (redirects are followed here, never by httpx):

1. Only ``http`` and ``https``.
2. The host is resolved (off the event loop) and refused if any answer is loopback,
   private, link-local (cloud metadata), CGNAT, multicast, reserved or otherwise not
   public (``netguard``), unless ``allow_private`` or ``allowed_hosts`` say otherwise.
3. The request goes to the checked address itself: the URL carries the IP, the
   ``Host`` header the name, and for HTTPS the ``sni_hostname`` extension makes TLS
   send and verify the name (both httpx's own transport and httpx-aiohttp honour it).
   So DNS rebinding, a second lookup answering a private address, has no second
   lookup to exploit.

Residual risks, stated plainly: an HTTP proxy configured on the shared client would do
its own resolution (the gateway builds it with ``trust_env=False`` and no proxy);
httpx's own pool keys connections by URL origin, so an HTTPS connection to one IP may
be reused for another name that resolves to the same IP (the aiohttp pool keys by SNI
name too); and an allowed host name is trusted with whatever its DNS answers.

The body is streamed and reading stops past ``max_bytes``; the whole fetch runs under
one ``timeout_s`` deadline. ``Accept-Encoding: identity`` is asked for so a small
compressed body cannot expand into a large one (a server that compresses anyway is
decoded, and the cap still applies to the decoded bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any, ClassVar

import httpx
import msgspec

from extensions.tools.base import (
    BaseTool,
    ToolContext,
    ToolError,
    decode_arguments,
    function_definition,
)
from extensions.tools.config import ToolsConfig, WebFetchConfig
from extensions.tools.html_text import html_to_text
from extensions.tools.netguard import (
    Address,
    AddressPolicy,
    Resolver,
    resolve_checked,
    system_resolver,
)

USER_AGENT = "Switchyard-web_fetch/0.1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})


class WebFetchArgs(msgspec.Struct):
    url: Annotated[str, msgspec.Meta(min_length=1)]


class WebFetchTool(BaseTool):
    name: ClassVar[str] = "web_fetch"

    def __init__(self, config: WebFetchConfig, *, resolver: Resolver = system_resolver) -> None:
        self.config = config
        self.policy = AddressPolicy(
            allow_private=config.allow_private, allowed_hosts=config.allowed_hosts
        )
        self.resolver = resolver

    @classmethod
    def from_config(cls, config: ToolsConfig) -> WebFetchTool:
        return cls(config.web_fetch)

    def definition(self) -> dict[str, Any]:
        return function_definition(
            self.name,
            "Fetch a web page (http or https) and return its readable text. "
            "Works for HTML, plain text and JSON; only public addresses.",
            {
                "type": "object",
                "properties": {"url": {"type": "string", "description": "Absolute URL."}},
                "required": ["url"],
            },
        )

    async def _run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        url = decode_arguments(arguments, WebFetchArgs).url.strip()
        try:
            async with asyncio.timeout(self.config.timeout_s):
                return await self._fetch(url, context.http)
        except TimeoutError:
            raise ToolError(f"timed out after {self.config.timeout_s:g}s fetching {url}") from None

    async def _fetch(self, raw_url: str, http: httpx.AsyncClient) -> str:
        url = _parse_url(raw_url)
        for _hop in range(self.config.max_redirects + 1):
            response = await self._send(url, http)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = _parse_url(location, base=url)
                    continue
                return await self._read(url, response)
            finally:
                await response.aclose()
        raise ToolError(f"too many redirects (more than {self.config.max_redirects})")

    async def _send(self, url: httpx.URL, http: httpx.AsyncClient) -> httpx.Response:
        """One hop: check the host's addresses, then try them in order until one connects."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await resolve_checked(self.policy, host, port, self.resolver)
        error: httpx.TransportError | None = None
        for address in addresses:
            request = self._pinned_request(url, host, address)
            try:
                # A Request built here, not by the client: no client cookies or default
                # headers go to an arbitrary site.
                response = await http.send(request, stream=True, follow_redirects=False)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = exc  # the next checked address may answer (IPv6 vs IPv4)
                continue
            except httpx.TimeoutException:
                raise TimeoutError from None
            except httpx.HTTPError as exc:
                raise ToolError(f"fetching {url} failed: {_describe(exc)}") from None
            _forget_cookies(http, address)
            return response
        raise ToolError(f"cannot connect to {host}: {_describe(error)}")

    def _pinned_request(self, url: httpx.URL, host: str, address: Address) -> httpx.Request:
        extensions: dict[str, Any] = {"timeout": httpx.Timeout(self.config.timeout_s).as_dict()}
        if url.scheme == "https":
            extensions["sni_hostname"] = host
        headers = {
            "Host": url.netloc.decode("ascii"),
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml,text/plain,application/json;q=0.9,*/*;q=0.1",
            "Accept-Encoding": "identity",
        }
        pinned = url.copy_with(host=str(address), username=None, password=None)
        return httpx.Request("GET", pinned, headers=headers, extensions=extensions)

    async def _read(self, url: httpx.URL, response: httpx.Response) -> str:
        if response.status_code >= 400:
            raise ToolError(
                f"{url} answered HTTP {response.status_code} {response.reason_phrase}".rstrip()
            )
        media_type, charset = _content_type(response.headers.get("content-type", ""))
        if media_type not in _HTML_TYPES and not _is_text(media_type):
            raise ToolError(
                f"unsupported content type {media_type or '(none)'} at {url}: "
                "only HTML, plain text and JSON are read"
            )
        body = await self._body(url, response)
        convert = html_to_text if media_type in _HTML_TYPES else _plain_text
        title, text = await asyncio.to_thread(convert, body, charset, media_type)
        return self._format(url, title, text)

    async def _body(self, url: httpx.URL, response: httpx.Response) -> bytes:
        limit = self.config.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ToolError(f"{url} is too large: {int(declared)} bytes (limit {limit})")
        chunks: list[bytes] = []
        received = 0
        try:
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > limit:
                    raise ToolError(f"{url} is too large: more than {limit} bytes")
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.HTTPError as exc:
            raise ToolError(f"reading {url} failed: {_describe(exc)}") from None
        return b"".join(chunks)

    def _format(self, url: httpx.URL, title: str, text: str) -> str:
        limit = self.config.max_chars
        if len(text) > limit:
            text = f"{text[:limit]}\n[truncated: first {limit} of {len(text)} characters]"
        head = f"URL: {url}\n" + (f"Title: {title}\n" if title else "")
        return f"{head}\n{text}" if text else f"{head}\n(no readable text)"


def _parse_url(raw: str, base: httpx.URL | None = None) -> httpx.URL:
    try:
        url = base.join(raw) if base is not None else httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ToolError(f"invalid URL {raw!r}: {exc}") from None
    if url.scheme not in ("http", "https"):
        scheme = url.scheme or "(none)"
        raise ToolError(f"refused: scheme {scheme} in {raw!r}; only http and https URLs")
    if not url.host:
        raise ToolError(f"invalid URL {raw!r}: no host")
    return url


def _content_type(header: str) -> tuple[str, str | None]:
    media_type, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    if charset is not None:
        try:
            "".encode(charset)
        except LookupError:
            charset = None
    return media_type.strip().lower(), charset


def _is_text(media_type: str) -> bool:
    return media_type in _TEXT_TYPES or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _plain_text(body: bytes, charset: str | None, media_type: str) -> tuple[str, str]:
    """``("", text)``: the body decoded; JSON re-indented so the model sees its shape."""
    text = body.decode(charset or "utf-8", errors="replace")
    if media_type == "application/json" or media_type.endswith("+json"):
        with contextlib.suppress(ValueError):  # not valid JSON after all: as it is
            text = json.dumps(json.loads(text), indent=1, ensure_ascii=False)
    return "", text


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no address to connect to"
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _forget_cookies(http: httpx.AsyncClient, address: Address) -> None:
    """Drop what the site set in the shared client's cookie jar (httpx stores every
    response's cookies there, keyed by the request's host, here the pinned address)."""
    jar = http.cookies.jar
    host = str(address) if address.version == 4 else f"[{address}]"
    for domain in (host, f"{host}.local"):
        with contextlib.suppress(KeyError):  # nothing stored for it
            jar.clear(domain=domain)
