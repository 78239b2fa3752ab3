"""The ``tools.mcp`` config section: one entry per MCP server whose tools the gateway runs."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

#: Letters, digits and ``-``, single ``_`` between them: no dots (``mcp:<server>.<tool>``
#: splits at the first one) and no ``__`` (the model's name ``mcp__<server>__<tool>``
#: splits at the first one), so both names of a tool name it without ambiguity.
SERVER_NAME = re.compile(r"[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*")
MAX_SERVER_NAME = 32


class McpServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One MCP server: started as a subprocess (``command``, stdio) or reached at a
    ``url`` (streamable HTTP). Its tools are the server tools ``mcp:<name>.<tool>``."""

    name: str
    """Names the server in tool names (``mcp:<name>.<tool>``): letters, digits, ``-``
    and single ``_``; no dots; at most 32 characters."""
    command: list[str] | str | None = None
    """The program to run, as a list (``[python, server.py]``) or one executable; its
    stdin/stdout carry the protocol. Exactly one of ``command`` and ``url``."""
    args: list[str] = []
    """Arguments after ``command``."""
    env: dict[str, str] = {}
    """Environment of the subprocess, over the few variables the MCP SDK passes on
    (``HOME``, ``PATH``, ``USER``, ...): the gateway's own environment (its keys) is not
    inherited. Values may be ``env:NAME``."""
    url: str | None = None
    """The server's streamable HTTP endpoint, e.g. ``http://tools:8000/mcp``."""
    allowed_tools: list[str] | None = None
    """Which of the server's tools are exposed, as names or shell-style patterns
    (``search_*``, ``read_?``, ``[ab]*``). Unset: all of them. A tool not matched is
    neither offered nor callable. Patterns are the standard library's
    ``fnmatch.fnmatchcase``: the syntax operators know from the shell, with nothing to
    install, case-sensitive on every OS (as MCP tool names are)."""
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Deadline for each tool call (and each listing of the tools): past it the model
    gets an ``error: ...`` result and the request goes on."""
    start_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Deadline for starting the server (spawning it, or reaching it) and the protocol
    handshake; past it the model gets an ``error: ...`` result too."""
    start_backoff_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    """After a failed start, how long requests naming the server fail at once with that
    failure (the model's ``error: ...``, a pattern's 503) instead of trying again, so a
    dead server costs each request nothing rather than another ``start_timeout_s``.
    The first request after it tries again. 0: every request tries."""
    max_chars: Annotated[int, msgspec.Meta(gt=0)] = 20_000
    """Longest tool result handed to the model; longer results are cut and marked."""

    def __post_init__(self) -> None:
        if not SERVER_NAME.fullmatch(self.name) or len(self.name) > MAX_SERVER_NAME:
            raise ValueError(
                f"MCP server name '{self.name}' must be letters, digits, '-' and single '_' "
                f"(no dots, no '__'), at most {MAX_SERVER_NAME} characters"
            )
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server '{self.name}' needs exactly one of command and url")
        if self.command is not None and not self.argv:
            raise ValueError(f"MCP server '{self.name}': command must not be empty")
        if self.url is not None:
            if self.args or self.env:
                raise ValueError(f"MCP server '{self.name}': args and env go with command")
            if not re.match(r"https?://[^/\s]+", self.url):
                raise ValueError(f"MCP server '{self.name}': url must be an http(s) URL")
        for pattern in self.allowed_tools or ():
            if not pattern:
                raise ValueError(
                    f"MCP server '{self.name}': allowed_tools entries must not be empty"
                )

    @property
    def argv(self) -> list[str]:
        """The whole command line: ``command`` then ``args``."""
        command = [self.command] if isinstance(self.command, str) else list(self.command or ())
        return [*command, *self.args]


def check_unique(servers: list[McpServerConfig]) -> None:
    seen: set[str] = set()
    for server in servers:
        if server.name in seen:
            raise ValueError(f"MCP server '{server.name}' is configured twice")
        seen.add(server.name)
