"""MCP servers' tools as server tools: ``mcp:<server>.<tool>``.

A tool provider (``switchyard.tool_providers``) rather than a tool: which tools exist is
known only once the server answers, so the tools extension asks this provider, request
by request, for the ``mcp:`` names the request activates (``resolve``).

- An activation names one tool (``mcp:calc.add``) or several with a shell-style pattern
  (``mcp:calc.*``, ``fnmatch``, case-sensitive), among the tools ``allowed_tools``
  lets through. A name that matches none of them is a 400 that lists those there are.
- Listing needs the connection, so the first request naming a server's tools connects
  (``connection``); the listing is then cached.
- A server that cannot be reached when a request starts does not fail the request: a
  tool named exactly is offered with an open schema (``{"type": "object"}``), and its
  call answers the model ``error: ...`` (or succeeds, if the server is back by then).
  A pattern cannot be expanded without the listing: that request is a 503.
- Each tool goes to the model under its wire name (``names``): its description and
  ``inputSchema`` as the function's, its result as text (``results``).
"""

from __future__ import annotations

import asyncio
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from extensions.tools.base import BaseTool, ToolContext, ToolError, function_definition
from extensions.tools.config import ToolsConfig
from extensions.tools.mcp.config import McpServerConfig
from extensions.tools.mcp.names import PREFIX, config_name, split_config_name, wire_name
from extensions.tools.mcp.results import result_text
from proxy.errors import InvalidRequest, ServiceUnavailable, shown

if TYPE_CHECKING:  # the SDK is imported only when tools.mcp names a server (it is slow)
    import mcp_types

    from extensions.tools.mcp.connection import McpConnection

_OPEN_SCHEMA: dict[str, Any] = {"type": "object"}
_PATTERN_CHARS = frozenset("*?[")
#: Beyond the SDK's own timeouts: a last bound on one call, which may start the
#: server, call, and (the connection broken) start it again and call once more.
_BOUND_MARGIN_S = 5.0


class McpTool(BaseTool):
    """One tool of one MCP server (``tool`` None: not listed, its server unreachable)."""

    def __init__(
        self,
        connection: McpConnection,
        tool_name: str,
        tool: mcp_types.Tool | None,
        unavailable: str | None = None,
    ) -> None:
        self.connection = connection
        self.tool_name = tool_name
        self.tool = tool
        self.unavailable = unavailable
        # One class, many tools: the name (a ClassVar of the other tools) is per instance.
        self.name = config_name(connection.name, tool_name)  # type: ignore[misc]
        self.wire_name = wire_name(connection.name, tool_name)

    def definition(self) -> dict[str, Any]:
        if self.tool is None:
            description = (
                f"Tool '{self.tool_name}' of the MCP server '{self.connection.name}', "
                f"which could not be reached ({self.unavailable})."
            )
            return function_definition(self.wire_name, description, dict(_OPEN_SCHEMA))
        description = self.tool.description or self.tool.title or self.tool_name
        schema = self.tool.input_schema or _OPEN_SCHEMA
        return function_definition(self.wire_name, description, dict(schema))

    async def _run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        config = self.connection.config
        try:
            bound = 2 * (config.start_timeout_s + config.timeout_s) + _BOUND_MARGIN_S
            async with asyncio.timeout(bound):
                result = await self.connection.call_tool(self.tool_name, arguments)
        except TimeoutError:
            raise ToolError(f"MCP server '{self.connection.name}' did not answer in time") from None
        return result_text(result, config.max_chars)


class McpToolProvider:
    """The configured MCP servers, their connections, and their tools by name."""

    prefix = PREFIX

    def __init__(self, servers: list[McpServerConfig]) -> None:
        from extensions.tools.mcp.connection import McpConnection

        self.connections = {server.name: McpConnection(server) for server in servers}

    @classmethod
    def from_config(cls, config: ToolsConfig) -> McpToolProvider | None:
        return cls(config.mcp) if config.mcp else None

    def known(self) -> list[str]:
        """For error messages: every server's tools, as a pattern (no connection made)."""
        return [f"{PREFIX}{name}.*" for name in self.connections]

    async def resolve(self, name: str) -> dict[str, BaseTool]:
        """The tools ``name`` (``mcp:<server>.<tool or pattern>``) activates, by config name."""
        parts = split_config_name(name)
        connection = self.connections.get(parts[0]) if parts else None
        if parts is None or connection is None:
            servers = ", ".join(sorted(self.connections))
            raise InvalidRequest(
                f"Unknown tool '{shown(name)}': MCP tools are named mcp:<server>.<tool> "
                f"(servers: {servers}).",
                param="tools",
            )
        server, wanted = parts
        pattern = bool(_PATTERN_CHARS & set(wanted))
        allowed = connection.config.allowed_tools
        try:
            listed = await connection.list_tools()
        except ToolError as exc:
            if pattern:
                raise ServiceUnavailable(
                    f"The MCP server '{server}' is unavailable, so '{shown(name)}' cannot be "
                    f"expanded: {exc}",
                    param="tools",
                ) from None
            if not _allowed(wanted, allowed):
                raise _unknown(name, server, []) from None
            return {name: McpTool(connection, wanted, None, str(exc))}
        offered = [tool for tool in listed if tool.name and _allowed(tool.name, allowed)]
        chosen = [
            tool
            for tool in offered
            if tool.name == wanted or (pattern and fnmatchcase(tool.name, wanted))
        ]
        if not chosen:
            raise _unknown(name, server, offered)
        tools = (McpTool(connection, tool.name, tool) for tool in chosen)
        return {tool.name: tool for tool in tools}

    def busy(self) -> bool:
        return any(c.busy() for c in self.connections.values())

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.connections.values()))


def _allowed(tool: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(fnmatchcase(tool, p) for p in patterns)


def _unknown(name: str, server: str, offered: list[mcp_types.Tool]) -> InvalidRequest:
    names = ", ".join(sorted(config_name(server, t.name) for t in offered)) or "none"
    return InvalidRequest(
        f"Unknown tool '{shown(name)}' (the MCP server '{server}' offers: {names}).",
        param="tools",
    )
