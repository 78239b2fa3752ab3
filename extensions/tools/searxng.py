"""SearXNG as a ``web_search`` provider, through its JSON API.

``GET {url}/search?q=...&format=json`` answers ``{"results": [{"title", "url",
"content"}, ...]}``. SearXNG refuses the JSON format with 403 unless ``json`` is listed
under ``search.formats`` in its ``settings.yml``; the error says so.
"""

from __future__ import annotations

from typing import ClassVar

import httpx
import msgspec

from extensions.tools.base import ToolError
from extensions.tools.config import WebSearchConfig
from extensions.tools.web_search import SearchResult
from proxy.settings import ConfigError


class _Result(msgspec.Struct):
    url: str
    title: str = ""
    content: str | None = ""


class _Answer(msgspec.Struct):
    results: list[_Result] = []


_decoder = msgspec.json.Decoder(_Answer)


class SearxngProvider:
    name: ClassVar[str] = "searxng"

    def __init__(self, config: WebSearchConfig) -> None:
        if not config.url:
            raise ConfigError("tools.web_search.url: required for the searxng provider")
        self.endpoint = config.url.rstrip("/") + "/search"
        self.timeout = config.timeout_s

    async def search(
        self, query: str, max_results: int, http: httpx.AsyncClient
    ) -> list[SearchResult]:
        response = await http.get(
            self.endpoint,
            params={"q": query, "format": "json"},
            headers={"Accept": "application/json"},
            timeout=self.timeout,
            follow_redirects=False,
        )
        if response.status_code == 403:
            raise ToolError(
                "search failed: SearXNG answered 403 (is 'json' listed under "
                "search.formats in its settings.yml?)"
            )
        if response.status_code != 200:
            raise ToolError(f"search failed: SearXNG answered HTTP {response.status_code}")
        try:
            answer = _decoder.decode(response.content)
        except msgspec.DecodeError as exc:
            raise ToolError(f"search failed: unexpected answer from SearXNG ({exc})") from None
        return [
            SearchResult(title=r.title, url=r.url, snippet=r.content or "")
            for r in answer.results[:max_results]
        ]
