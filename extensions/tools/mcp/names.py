"""The two names of an MCP tool, and why there are two.

Config, permissions, activation (``X-Switchyard-Tools``, ``"switchyard": {"tools"}``),
logs and metrics name a tool ``mcp:<server>.<tool>``. That name cannot reach a model:
OpenAI (and most OpenAI-compatible upstreams) accept function names matching
``^[a-zA-Z0-9_-]{1,64}$`` only. The model is offered the tool as
``mcp__<server>__<tool>`` instead; the gateway maps the name back when the model calls
it, so a client never sees it unless it reads the model's raw tool calls.

The wire name is the plain form whenever that is valid (the tool's name is letters,
digits, ``_`` and ``-`` and the whole fits in 64 characters). Otherwise (an MCP tool
name with ``.`` or ``/``, or a long one) the invalid characters become ``_`` and an
8-hex digest of the config name is appended, cut to fit: the name stays the same on
every replica and after a restart, so a conversation that carries earlier tool calls
keeps naming the same tool. Server names cannot hold ``__`` (see ``config``), so a
plain wire name names one server and one tool.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "mcp:"
WIRE_PREFIX = "mcp__"
WIRE_SEPARATOR = "__"
OPENAI_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DIGEST_CHARS = 8


def config_name(server: str, tool: str) -> str:
    """``mcp:<server>.<tool>``: how config, permissions, logs and metrics name it."""
    return f"{PREFIX}{server}.{tool}"


def split_config_name(name: str) -> tuple[str, str] | None:
    """``(server, tool)`` of ``mcp:<server>.<tool>`` (the tool may be a pattern), or
    None for a name that is not an MCP tool's."""
    if not name.startswith(PREFIX):
        return None
    server, dot, tool = name[len(PREFIX) :].partition(".")
    if not dot or not server or not tool:
        return None
    return server, tool


def wire_name(server: str, tool: str) -> str:
    """The name the model is offered: valid for OpenAI and every chat template."""
    plain = f"{WIRE_PREFIX}{server}{WIRE_SEPARATOR}{tool}"
    if OPENAI_FUNCTION_NAME.fullmatch(plain):
        return plain
    head = f"{WIRE_PREFIX}{server}{WIRE_SEPARATOR}"
    digest = hashlib.sha256(config_name(server, tool).encode()).hexdigest()[:_DIGEST_CHARS]
    room = 64 - len(head) - len(digest) - 1
    return f"{head}{_UNSAFE.sub('_', tool)[:room]}_{digest}"
