"""``web_search``: ask a configured search provider; off unless one is configured.

Providers are classes registered in the ``switchyard.search_providers`` entry-point
group (SearXNG ships with Switchyard). The provider's URL comes from the operator's
config, not from the model, so it is not put through ``web_fetch``'s address checks:
a SearXNG instance on the private network is the usual setup.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated, Any, ClassVar, Protocol

import httpx
import msgspec

from extensions.tools.base import (
    BaseTool,
    ToolContext,
    ToolError,
    decode_arguments,
    function_definition,
)
from extensions.tools.config import ToolsConfig, WebSearchConfig
from proxy.settings import ConfigError

PROVIDER_GROUP = "switchyard.search_providers"
_SNIPPET_CHARS = 500


class SearchResult(msgspec.Struct, kw_only=True):
    title: str
    url: str
    snippet: str = ""


class SearchProvider(Protocol):
    """One search backend. ``__init__(config)`` raises ``ConfigError`` when the config
    lacks what it needs; ``search`` raises ``ToolError`` for a failed search."""

    name: ClassVar[str]

    def __init__(self, config: WebSearchConfig) -> None: ...

    async def search(
        self, query: str, max_results: int, http: httpx.AsyncClient
    ) -> list[SearchResult]: ...


def registered_providers() -> dict[str, type[SearchProvider]]:
    return {entry.name: entry.load() for entry in entry_points(group=PROVIDER_GROUP)}


class WebSearchArgs(msgspec.Struct):
    query: Annotated[str, msgspec.Meta(min_length=1)]
    max_results: Annotated[int, msgspec.Meta(ge=1)] | None = None


class WebSearchTool(BaseTool):
    name: ClassVar[str] = "web_search"

    def __init__(self, config: WebSearchConfig, provider: SearchProvider) -> None:
        self.config = config
        self.provider = provider

    @classmethod
    def from_config(cls, config: ToolsConfig) -> WebSearchTool | None:
        settings = config.web_search
        if settings.provider is None:
            return None
        providers = registered_providers()
        provider_cls = providers.get(settings.provider)
        if provider_cls is None:
            raise ConfigError(
                f"tools.web_search.provider: unknown provider '{settings.provider}' "
                f"(installed: {', '.join(sorted(providers)) or 'none'})"
            )
        return cls(settings, provider_cls(settings))

    def definition(self) -> dict[str, Any]:
        return function_definition(
            self.name,
            "Search the web. Returns numbered results with title, URL and snippet; "
            "use web_fetch on a result's URL to read the page.",
            {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to search for."},
                    "max_results": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": self.config.max_results,
                        "description": f"At most {self.config.max_results}.",
                    },
                },
                "required": ["query"],
            },
        )

    async def _run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        args = decode_arguments(arguments, WebSearchArgs)
        limit = min(args.max_results or self.config.max_results, self.config.max_results)
        query = args.query.strip()
        try:
            results = await self.provider.search(query, limit, context.http)
        except httpx.TimeoutException:
            raise ToolError(f"search timed out after {self.config.timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"search failed: {type(exc).__name__}: {exc}") from None
        if not results:
            return f"No results for {query!r}."
        return "\n\n".join(_format(i, r) for i, r in enumerate(results[:limit], 1))


def _format(index: int, result: SearchResult) -> str:
    snippet = " ".join(result.snippet.split())
    if len(snippet) > _SNIPPET_CHARS:
        snippet = snippet[:_SNIPPET_CHARS].rstrip() + "…"
    lines = [f"{index}. {result.title.strip() or '(untitled)'}", f"   {result.url}"]
    if snippet:
        lines.append(f"   {snippet}")
    return "\n".join(lines)
