"""web_search with the SearXNG provider, against a fake SearXNG on a local port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from extensions.tools.base import ToolContext, load_tools
from extensions.tools.config import ToolsConfig, WebSearchConfig
from extensions.tools.searxng import SearxngProvider
from extensions.tools.web_search import WebSearchTool
from proxy.settings import ConfigError
from tests.support.servers import answer_lifespan, serve_asgi

RESULTS = [
    {"title": "Switchyard docs", "url": "https://docs.example/switchyard", "content": "A gateway."},
    {"title": "Rail yards", "url": "https://rail.example/yards", "content": "Trains  \n move."},
    {"title": "", "url": "https://third.example/", "content": None},
]


class FakeSearxng:
    """``/search`` as SearXNG answers it; ``/nojson`` answers 403 like an instance
    without the JSON format, ``/broken`` sends HTML, ``/slow`` takes a second."""

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        query = parse_qs(scope["query_string"].decode())
        self.queries.append(query)
        status, ctype, body = 200, b"application/json", b""
        if scope["path"] == "/search" and query.get("format") == ["json"]:
            body = json.dumps({"query": query["q"][0], "results": RESULTS}).encode()
        elif scope["path"] == "/broken/search":
            ctype, body = b"text/html", b"<html>oops</html>"
        elif scope["path"] == "/slow/search":
            await asyncio.sleep(1)
        else:
            status, body = 403, b"Forbidden"
        head = [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def searxng() -> Iterator[tuple[FakeSearxng, str]]:
    app = FakeSearxng()
    with serve_asgi(app) as running:
        yield app, running.url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _tool(url: str, **config: Any) -> tuple[WebSearchTool, ToolsConfig]:
    settings = WebSearchConfig(provider="searxng", url=url, **config)
    return WebSearchTool(settings, SearxngProvider(settings)), ToolsConfig(web_search=settings)


async def test_results_are_numbered_with_url_and_snippet(
    searxng: tuple[FakeSearxng, str], http: httpx.AsyncClient
) -> None:
    fake, url = searxng
    tool, config = _tool(url + "/")
    text = await tool.run({"query": " switchyard gateway "}, ToolContext(http=http, config=config))
    assert text == (
        "1. Switchyard docs\n   https://docs.example/switchyard\n   A gateway.\n\n"
        "2. Rail yards\n   https://rail.example/yards\n   Trains move.\n\n"
        "3. (untitled)\n   https://third.example/"
    )
    assert fake.queries[-1] == {"q": ["switchyard gateway"], "format": ["json"]}


async def test_max_results_from_config_and_arguments(
    searxng: tuple[FakeSearxng, str], http: httpx.AsyncClient
) -> None:
    tool, config = _tool(searxng[1], max_results=2)
    context = ToolContext(http=http, config=config)
    assert (await tool.run({"query": "x"}, context)).count("\n\n") == 1
    assert (await tool.run({"query": "x", "max_results": 1}, context)).startswith("1. Switch")
    assert "2. " not in await tool.run({"query": "x", "max_results": 1}, context)
    assert (await tool.run({"query": "x", "max_results": 50}, context)).count("\n\n") == 1


@pytest.mark.parametrize(
    ("path", "arguments", "expected"),
    [
        ("/nojson", {"query": "x"}, "error: search failed: SearXNG answered 403 (is 'json'"),
        ("/broken", {"query": "x"}, "error: search failed: unexpected answer from SearXNG"),
        ("/slow", {"query": "x"}, "error: search timed out after 0.2s"),
        ("", {}, "error: invalid arguments: Object missing required field `query`"),
        ("", {"query": ""}, "error: invalid arguments: Expected `str` of length >= 1"),
        ("", {"query": "x", "max_results": 0}, "error: invalid arguments: Expected `int` >= 1"),
    ],
)
async def test_failures_come_back_as_error_text(
    searxng: tuple[FakeSearxng, str],
    http: httpx.AsyncClient,
    path: str,
    arguments: dict[str, Any],
    expected: str,
) -> None:
    tool, config = _tool(searxng[1] + path, timeout_s=0.2)
    text = await tool.run(arguments, ToolContext(http=http, config=config))
    assert text.startswith(expected)


def test_off_unless_configured_and_found_by_entry_point() -> None:
    assert "web_search" not in load_tools(ToolsConfig())
    configured = WebSearchConfig(provider="searxng", url="http://searx.internal:8888")
    tool = load_tools(ToolsConfig(web_search=configured))["web_search"]
    assert isinstance(tool, WebSearchTool) and isinstance(tool.provider, SearxngProvider)
    assert tool.definition()["function"]["parameters"]["properties"]["max_results"]["maximum"] == 5


def test_misconfigured_provider_fails_at_load() -> None:
    with pytest.raises(ConfigError, match=r"unknown provider 'bing' \(installed: searxng\)"):
        load_tools(ToolsConfig(web_search=WebSearchConfig(provider="bing")))
    with pytest.raises(ConfigError, match=r"tools\.web_search\.url: required"):
        load_tools(ToolsConfig(web_search=WebSearchConfig(provider="searxng")))
