"""Tools of MCP servers as server-side tools (``tools.mcp``): see ``provider``.

Importing this package does not import the MCP SDK; ``provider`` does.
"""
