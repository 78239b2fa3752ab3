"""A real MCP server for the tests, written with the official SDK (``MCPServer``).

Run as a script it serves stdio (``python mcp_server.py [--pid-file PATH]``: the file
receives its pid, so a test can kill it or check it is gone); ``http_app()`` is the
same server as a streamable HTTP ASGI app, for ``serve_asgi``.

Tools: ``add`` (a + b, computed here; each call written to the file named by
``$MCP_TEST_CALL_LOG`` when it is set), ``upper`` (text upper-cased, with a ``.``
in its MCP name: ``text.upper``), ``hang`` (never answers), ``fail`` (an ``isError``
result), ``pid`` (the process id serving it).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

HANG_S = 3600
#: Set (through the gateway's ``env`` config), every ``add`` is appended to this file.
CALL_LOG = "MCP_TEST_CALL_LOG"


def build() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("switchyard-tests", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers and return the sum."""
        log = os.environ.get(CALL_LOG)
        if log:
            with open(log, "a") as f:
                f.write(f"{a}+{b}={a + b}\n")
        return a + b

    @server.tool(name="text.upper")
    def upper(text: str) -> str:
        """Return the text in upper case."""
        return text.upper()

    @server.tool()
    async def hang(reason: str = "") -> str:
        """Never answers (for timeout tests)."""
        await anyio.sleep(HANG_S)
        return "too late"

    @server.tool()
    def fail(why: str = "") -> str:
        """Always fails."""
        raise ValueError(f"failed on purpose: {why}")

    @server.tool()
    def pid() -> int:
        """The process id of the server."""
        return os.getpid()

    return server


def http_app() -> Any:
    """The server over streamable HTTP, at ``/mcp``."""
    return build().streamable_http_app(host="127.0.0.1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid-file")
    options = parser.parse_args()
    if options.pid_file:
        with open(options.pid_file, "w") as f:
            f.write(str(os.getpid()))
    build().run()


if __name__ == "__main__":
    main()
