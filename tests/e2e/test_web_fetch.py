"""web_fetch against real local servers, through both transports of the shared client.

Loopback is reachable only through ``allowed_hosts``; the refusal tests run with the
allowlist off (or not covering the target) and check that the refusal names the reason
and that no request left the client: every request the client sends is recorded by an
event hook, and the local site records every request it receives. Nothing here ever
connects to a non-loopback address: refusals happen before any connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import trustme
from aiohttp import web

from extensions.tools.base import ToolContext
from extensions.tools.config import ToolsConfig, WebFetchConfig
from extensions.tools.netguard import Address, Resolver, system_resolver
from extensions.tools.web_fetch import WebFetchTool
from proxy.http_client import build_http_client
from proxy.settings import HttpConfig
from tests.support.servers import answer_lifespan, serve_asgi

PAGE = b"""<!doctype html><html><head><title>Test  page</title>
<script>var secret = "do not show";</script><style>p {color: red}</style></head>
<body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Heading</h1><p>Hello <b>world</b>,
  this is a test.</p><ul><li>first</li><li>second</li></ul></body></html>"""
BIG = 200_000


class Site:
    """A tiny ASGI site with the pages web_fetch meets; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        headers = dict(scope["headers"])
        path = scope["path"]
        self.requests.append((path, headers.get(b"host", b"").decode()))
        query = parse_qs(scope["query_string"].decode())

        async def answer(status: int, body: bytes, ctype: str = "text/plain", **extra: str):
            head = [(b"content-type", ctype.encode()), (b"content-length", b"%d" % len(body))]
            head += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": body})

        if path == "/page":
            await answer(200, PAGE, "text/html; charset=utf-8")
        elif path == "/plain":
            await answer(200, "plain text, café".encode(), "text/plain; charset=utf-8")
        elif path == "/json":
            await answer(200, b'{"a": [1, 2], "b": "x"}', "application/json")
        elif path == "/image":
            await answer(200, b"\x89PNG\r\n\x1a\n", "image/png")
        elif path == "/big":
            await answer(200, b"x" * BIG)
        elif path == "/big-stream":  # no Content-Length: the cap must stop the reading
            head = [(b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            for _ in range(BIG // 10_000):
                chunk = {"type": "http.response.body", "body": b"y" * 10_000, "more_body": True}
                await send(chunk)
            await send({"type": "http.response.body", "body": b""})
        elif path == "/slow":  # headers at once, then a trickle: only a deadline stops it
            head = [(b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            for _ in range(20):
                await asyncio.sleep(0.1)
                await send({"type": "http.response.body", "body": b".", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path.startswith("/chain/"):
            left = int(path.removeprefix("/chain/"))
            if left == 0:
                await answer(200, b"<p>end of the chain</p>", "text/html")
            else:
                await answer(302, b"", location=f"../chain/{left - 1}")
        elif path == "/redirect":
            await answer(302, b"", location=query["to"][0])
        elif path == "/host":
            await answer(200, headers.get(b"host", b"").decode().encode())
        elif path == "/cookie":
            await answer(200, b"cookie set", set_cookie="tracker=1; Path=/")
        else:
            await answer(404, b"not here")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    app = Site()
    with serve_asgi(app) as running:
        app.url = running.url
        yield app


@pytest.fixture(params=["httpx", "aiohttp"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's shared client, as the app builds it; ``client.sent`` lists the URLs
    of every request it sent."""
    client = build_http_client(HttpConfig(transport=request.param))
    client.sent = []  # type: ignore[attr-defined]

    async def record(req: httpx.Request) -> None:
        client.sent.append(req.url)  # type: ignore[attr-defined]

    client.event_hooks["request"].append(record)
    yield client
    await client.aclose()


def _resolver(names: dict[str, str]) -> Resolver:
    """DNS answers for made-up names; other names (``localhost``) go to the system."""

    async def resolve(host: str, port: int) -> list[Address]:
        if host in names:
            return [ipaddress.ip_address(names[host])]
        return await system_resolver(host, port)

    return resolve


async def fetch(http: httpx.AsyncClient, url: str, resolver: Any = None, **config: Any) -> str:
    tool_config = WebFetchConfig(**config)
    tool = WebFetchTool(tool_config, resolver=resolver) if resolver else WebFetchTool(tool_config)
    context = ToolContext(http=http, config=ToolsConfig(web_fetch=tool_config))
    return await tool.run({"url": url}, context)


LOOPBACK = {"allowed_hosts": ["127.0.0.1"]}


async def test_html_becomes_readable_text(site: Site, http: httpx.AsyncClient) -> None:
    text = await fetch(http, f"{site.url}/page", **LOOPBACK)
    assert text.startswith(f"URL: {site.url}/page\nTitle: Test page\n")
    assert "# Heading" in text
    assert "Hello world, this is a test." in text
    assert "- first\n- second" in text
    assert "secret" not in text and "color" not in text and "About" not in text


async def test_plain_text_and_json_as_they_are(site: Site, http: httpx.AsyncClient) -> None:
    assert (await fetch(http, f"{site.url}/plain", **LOOPBACK)).endswith("plain text, café")
    text = await fetch(http, f"{site.url}/json", **LOOPBACK)
    assert json.loads(text.split("\n\n", 1)[1]) == {"a": [1, 2], "b": "x"}


async def test_other_content_types_are_refused(site: Site, http: httpx.AsyncClient) -> None:
    text = await fetch(http, f"{site.url}/image", **LOOPBACK)
    assert text.startswith("error: unsupported content type image/png")


async def test_size_cap(site: Site, http: httpx.AsyncClient) -> None:
    declared = await fetch(http, f"{site.url}/big", max_bytes=50_000, **LOOPBACK)
    assert declared == f"error: {site.url}/big is too large: {BIG} bytes (limit 50000)"
    streamed = await fetch(http, f"{site.url}/big-stream", max_bytes=50_000, **LOOPBACK)
    assert streamed == f"error: {site.url}/big-stream is too large: more than 50000 bytes"
    fits = await fetch(http, f"{site.url}/big-stream", max_bytes=BIG, max_chars=BIG, **LOOPBACK)
    assert fits.endswith("\n\n" + "y" * BIG)


async def test_returned_text_is_cut_at_max_chars(site: Site, http: httpx.AsyncClient) -> None:
    text = await fetch(http, f"{site.url}/big", max_chars=1000, **LOOPBACK)
    assert text.endswith(f"x\n[truncated: first 1000 of {BIG} characters]")


async def test_timeout_covers_the_whole_fetch(site: Site, http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    text = await fetch(http, f"{site.url}/slow", timeout_s=0.5, **LOOPBACK)
    assert text == f"error: timed out after 0.5s fetching {site.url}/slow"
    assert time.monotonic() - started < 1.5


async def test_redirect_chain_is_followed(site: Site, http: httpx.AsyncClient) -> None:
    text = await fetch(http, f"{site.url}/chain/3", **LOOPBACK)
    assert text.startswith(f"URL: {site.url}/chain/0\n") and "end of the chain" in text
    assert [u.path for u in http.sent] == [f"/chain/{n}" for n in (3, 2, 1, 0)]  # type: ignore[attr-defined]
    too_many = await fetch(http, f"{site.url}/chain/3", max_redirects=2, **LOOPBACK)
    assert too_many == "error: too many redirects (more than 2)"


async def test_http_errors_are_reported(site: Site, http: httpx.AsyncClient) -> None:
    text = await fetch(http, f"{site.url}/missing", **LOOPBACK)
    assert text == f"error: {site.url}/missing answered HTTP 404 Not Found"


async def test_request_goes_to_the_checked_address_with_the_name_as_host(
    site: Site, http: httpx.AsyncClient
) -> None:
    resolver = _resolver({"site.example": "127.0.0.1"})
    url = f"http://site.example:{site.url.rsplit(':', 1)[1]}/host"
    text = await fetch(http, url, resolver, allowed_hosts=["127.0.0.0/8"])
    assert text.endswith(f"\n\nsite.example:{site.url.rsplit(':', 1)[1]}")
    assert [u.host for u in http.sent] == ["127.0.0.1"]  # type: ignore[attr-defined]


async def test_site_cookies_stay_out_of_the_shared_client(
    site: Site, http: httpx.AsyncClient
) -> None:
    assert (await fetch(http, f"{site.url}/cookie", **LOOPBACK)).endswith("cookie set")
    assert not list(http.cookies.jar)


# --- refusals: the allowlist is off or does not cover the target --------------------


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.1:{port}/page", "refused: 127.0.0.1 is a loopback address"),
        ("http://localhost:{port}/page", "refused: localhost resolves to "),
        ("http://[::1]:{port}/page", "refused: ::1 is a loopback address"),
        ("http://2130706433:{port}/page", "refused: 2130706433 means 127.0.0.1, a loopback"),
        ("http://0x7f000001:{port}/page", "refused: 0x7f000001 means 127.0.0.1, a loopback"),
    ],
)
async def test_loopback_refused_without_a_request(
    site: Site, http: httpx.AsyncClient, target: str, reason: str
) -> None:
    port = site.url.rsplit(":", 1)[1]
    before = len(site.requests)
    text = await fetch(http, target.format(port=port))
    assert text.startswith(f"error: {reason}")
    assert http.sent == []  # type: ignore[attr-defined]
    assert len(site.requests) == before


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://10.0.0.1/", "refused: 10.0.0.1 is a private address"),
        ("http://192.168.1.1/admin", "refused: 192.168.1.1 is a private address"),
        ("http://172.16.0.1/", "refused: 172.16.0.1 is a private address"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "refused: 169.254.169.254 is the cloud metadata address",
        ),
        (
            "http://[::ffff:10.0.0.1]/",
            "refused: ::ffff:10.0.0.1 is a private address (10.0.0.1 inside",
        ),
        ("http://localhost:{port}/page", "refused: localhost resolves to "),
        ("http://3232235777/", "refused: 3232235777 means 192.168.1.1, a private address"),
        ("file:///etc/passwd", "refused: scheme file in 'file:///etc/passwd'"),
    ],
)
async def test_redirect_from_an_allowed_host_to_a_private_one_is_refused(
    site: Site, http: httpx.AsyncClient, target: str, reason: str
) -> None:
    """A public-looking name (allowed, served by the local site) redirects inward."""
    port = site.url.rsplit(":", 1)[1]
    resolver = _resolver({"news.example": "127.0.0.1"})
    start = httpx.URL(f"http://news.example:{port}/redirect").copy_merge_params(
        {"to": target.format(port=port)}
    )
    text = await fetch(http, str(start), resolver, allowed_hosts=["news.example"])
    assert text.startswith(f"error: {reason}")
    assert [u.host for u in http.sent] == ["127.0.0.1"]  # type: ignore[attr-defined]
    assert site.requests[-1] == ("/redirect", f"news.example:{port}")


# --- HTTPS: the connection goes to the checked IP, TLS checks the name ----------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _tls_site(ca: trustme.CA, name: str) -> tuple[web.AppRunner, int]:
    async def host(request: web.Request) -> web.Response:
        return web.Response(text=f"over TLS to {request.headers['Host']}")

    app = web.Application()
    app.router.add_get("/host", host)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tls = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await tls.start()
    return runner, runner.addresses[0][1]


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
@pytest.mark.parametrize("cert_name", ["site.example", "other.example"])
async def test_https_is_pinned_and_verified_against_the_name(
    ca: trustme.CA, transport: str, cert_name: str
) -> None:
    from httpx_aiohttp import AiohttpTransport

    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    engine = (
        AiohttpTransport(verify=trust, trust_env=False)
        if transport == "aiohttp"
        else httpx.AsyncHTTPTransport(verify=trust, trust_env=False)
    )
    runner, port = await _tls_site(ca, cert_name)
    try:
        async with httpx.AsyncClient(transport=engine, trust_env=False) as http:
            resolver = _resolver({"site.example": "127.0.0.1"})
            url = f"https://site.example:{port}/host"
            text = await fetch(http, url, resolver, allowed_hosts=["127.0.0.1"])
    finally:
        await runner.cleanup()
    if cert_name == "site.example":
        assert text.endswith(f"\n\nover TLS to site.example:{port}")
    else:
        assert text.startswith("error: cannot connect to site.example: ")
