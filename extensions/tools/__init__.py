"""Server-side tools (``web_fetch``, ``web_search``, ``rag_search``) for the tool loop."""

from extensions.tools.base import (
    ENTRY_POINT_GROUP,
    ServerTool,
    ToolContext,
    ToolError,
    call_tool,
    load_tools,
    parse_arguments,
    registered_tools,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ServerTool",
    "ToolContext",
    "ToolError",
    "call_tool",
    "load_tools",
    "parse_arguments",
    "registered_tools",
]
