"""Server-side tools: the protocol, the per-call context, and loading by name.

A tool is a class registered in the ``switchyard.tools`` entry-point group. The tool
loop (owned by the tools extension) asks each for its OpenAI ``definition()`` and calls
``run()`` with the model's arguments; whatever ``run()`` returns is the content of the
``tool`` message sent back to the model.

Failures the model can do something about (a refused address, a timeout, a page too
large, bad arguments) come back as short ``"error: ..."`` text, never as exceptions:
the model reads them and tries something else. Only programming errors raise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import msgspec

from proxy.state.records import DEFAULT_TEAM_ID

if TYPE_CHECKING:
    import httpx

    from extensions.tools.config import ToolsConfig

ENTRY_POINT_GROUP = "switchyard.tools"
PROVIDER_GROUP = "switchyard.tool_providers"
ERROR_PREFIX = "error: "


class ToolError(Exception):
    """A failure to report to the model as ``error: <message>``; not a bug."""


@dataclass(slots=True)
class ToolContext:
    """What one tool call may use; built by the tool loop for each request."""

    http: httpx.AsyncClient
    """The gateway's shared client (owned by the app lifespan)."""
    config: ToolsConfig
    rag: Any | None = None
    """The RAG store (``RagStore``), or None when RAG is not configured."""
    rag_collections: list[str] = field(default_factory=list)
    """Collections active for this request; ``rag_search`` searches these by default."""
    key_id: str | None = None
    team_id: str = DEFAULT_TEAM_ID
    """The caller's team: the owner of the RAG collections it may search."""
    """The API key's id, for tools that scope data by key."""


class ServerTool(Protocol):
    name: ClassVar[str]

    def definition(self) -> dict[str, Any]:
        """The OpenAI tool definition: ``{"type": "function", "function": {...}}``."""
        ...

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        """The text returned to the model; failures are ``error: ...`` text."""
        ...


class BaseTool:
    """Shared plumbing: ``run`` turns a ``ToolError`` from ``_run`` into error text."""

    name: ClassVar[str]

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        try:
            return await self._run(arguments, context)
        except ToolError as exc:
            return error_text(str(exc))

    async def _run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        raise NotImplementedError


class ServerToolClass(Protocol):
    """What the ``switchyard.tools`` entry points name: a tool class with a factory."""

    name: ClassVar[str]

    @classmethod
    def from_config(cls, config: ToolsConfig) -> ServerTool | None:
        """The tool for this config, or None when the config leaves it off."""
        ...


class ToolProvider(Protocol):
    """Tools known only at run time (an MCP server's), all named ``<prefix>...``.

    Registered in the ``switchyard.tool_providers`` group by a class with
    ``from_config(config) -> provider | None``. The tools extension asks it, per request,
    for the tools an activated name stands for (``resolve``; a pattern may stand for
    several); the tools it returns may offer the model another name than their config
    name (``definition()``'s function name: the loop maps it back)."""

    prefix: ClassVar[str]

    def known(self) -> list[str]:
        """What to list as available in an unknown-tool error (no I/O)."""
        ...

    async def resolve(self, name: str) -> Mapping[str, ServerTool]:
        """The tools ``name`` activates, by config name; ``InvalidRequest`` if none."""
        ...

    def busy(self) -> bool:
        """Whether calls are in flight (a reload waits for them before ``aclose``)."""
        ...

    async def aclose(self) -> None: ...


def function_definition(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


ArgsT = TypeVar("ArgsT", bound=msgspec.Struct)


def decode_arguments(arguments: Any, schema: type[ArgsT]) -> ArgsT:
    """The model's arguments as ``schema``; ToolError naming the problem otherwise."""
    if not isinstance(arguments, dict):
        raise ToolError(f"invalid arguments: expected a JSON object, got {_kind(arguments)}")
    try:
        return msgspec.convert(arguments, schema)
    except msgspec.ValidationError as exc:
        raise ToolError(f"invalid arguments: {exc}") from None


def _kind(value: Any) -> str:
    kinds: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return kinds.get(type(value), "a value")


def error_text(message: str) -> str:
    return ERROR_PREFIX + message


def parse_arguments(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A tool call's ``arguments`` (a JSON string from the model) as a dict."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ToolError(f"invalid arguments: not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ToolError(f"invalid arguments: expected a JSON object, got {_kind(value)}")
    return value


async def call_tool(
    tools: Mapping[str, ServerTool],
    name: str,
    raw_arguments: str | Mapping[str, Any] | None,
    context: ToolContext,
) -> str:
    """Run one tool call as the model sent it (arguments still a JSON string).

    Unknown tool names and arguments that are not a JSON object come back as error
    text too, so one bad call never ends the loop.
    """
    tool = tools.get(name)
    if tool is None:
        return error_text(f"unknown tool '{name}' (available: {', '.join(sorted(tools))})")
    try:
        arguments = parse_arguments(raw_arguments)
    except ToolError as exc:
        return error_text(str(exc))
    return await tool.run(arguments, context)


def registered_tools() -> dict[str, ServerToolClass]:
    """Every tool class installed, by its registered name."""
    return {entry.name: entry.load() for entry in entry_points(group=ENTRY_POINT_GROUP)}


def load_providers(config: ToolsConfig) -> list[ToolProvider]:
    """The tool providers this config switches on (MCP when ``tools.mcp`` is set)."""
    providers = []
    for entry in entry_points(group=PROVIDER_GROUP):
        provider = entry.load().from_config(config)
        if provider is not None:
            providers.append(provider)
    return providers


def load_tools(config: ToolsConfig) -> dict[str, ServerTool]:
    """The tools this config makes available, by name (``web_search`` only when a
    provider is configured). A provider that is named but not installed raises
    ``ConfigError``, so a typo fails at startup rather than at the model's first call."""
    tools: dict[str, ServerTool] = {}
    for name, cls in registered_tools().items():
        tool = cls.from_config(config)
        if tool is not None:
            tools[name] = tool
    return tools
