"""The ``tools:`` config section: server-side tools and their loop."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec

from extensions.tools.mcp.config import McpServerConfig, check_unique


class WebFetchConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``web_fetch`` server tool: limits and the private-address policy."""

    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    """Deadline for one whole fetch: DNS, every redirect hop and the body together."""
    max_bytes: Annotated[int, msgspec.Meta(gt=0)] = 5_000_000
    """Largest response body read; a larger one is refused (reading stops at the cap)."""
    max_chars: Annotated[int, msgspec.Meta(gt=0)] = 20_000
    """Longest text handed back to the model; longer text is cut and marked as cut."""
    max_redirects: Annotated[int, msgspec.Meta(ge=0)] = 5
    """Redirect hops followed, each one checked like the first request."""
    allow_private: bool = False
    """Allow loopback, private, link-local (cloud metadata) and other non-public
    addresses. Off: the tool must not become a way into the deployment's network."""
    allowed_hosts: list[str] = []
    """Exceptions to the private-address refusal: host names (``intranet.example``,
    ``*.corp.example``), addresses or CIDR ranges (``10.1.0.0/16``). A listed host name
    trusts whatever its DNS answers."""

    def __post_init__(self) -> None:
        for entry in self.allowed_hosts:
            if not entry.strip():
                raise ValueError("allowed_hosts entries must not be empty")
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"allowed_hosts: '{entry}' is not a CIDR range") from None


class WebSearchConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``web_search`` server tool; off unless ``provider`` is set."""

    provider: str | None = None
    """Search provider by registered name (``searxng``, or one installed through the
    ``switchyard.search_providers`` entry points). Unset: no ``web_search`` tool."""
    url: str | None = None
    """The provider's base URL, e.g. a SearXNG instance with the JSON format enabled."""
    max_results: Annotated[int, msgspec.Meta(gt=0)] = 5
    """Results handed back to the model per search (the model may ask for fewer)."""
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Deadline for one search request."""


class ToolsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Server-side tools (``web_fetch``, ``web_search``, ``rag_search``, the tools of
    MCP servers) and their loop."""

    max_rounds: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Model calls at most in one tool loop before the answer is returned as it stands."""
    web_fetch: WebFetchConfig = msgspec.field(default_factory=WebFetchConfig)
    web_search: WebSearchConfig = msgspec.field(default_factory=WebSearchConfig)
    mcp: list[McpServerConfig] = []
    """MCP servers whose tools become server tools ``mcp:<server>.<tool>``."""

    def __post_init__(self) -> None:
        check_unique(self.mcp)
