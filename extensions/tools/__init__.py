"""Server-side tools (``web_fetch``, ``web_search``, ``rag_search``, MCP servers' tools)
for the tool loop."""

from extensions.tools.base import (
    ENTRY_POINT_GROUP,
    ServerTool,
    ToolContext,
    ToolError,
    ToolProvider,
    call_tool,
    load_providers,
    load_tools,
    parse_arguments,
    registered_tools,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ServerTool",
    "ToolContext",
    "ToolError",
    "ToolProvider",
    "call_tool",
    "load_providers",
    "load_tools",
    "parse_arguments",
    "registered_tools",
]
