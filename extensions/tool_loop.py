"""Server-side tools: the gateway runs the tool loop itself.

Each round asks the model (non-streaming) with the server tools added to whatever tools
the client defined. Calls to server tools are executed here, concurrently, their results
appended, and the model asked again — up to ``tools.max_rounds`` rounds, after which it
must answer without tools. Calls to the client's own tools end the loop and go back to
the client as usual (server calls of that same turn are executed and kept in the
conversation, but not shown to the client, which could not answer them).

A streaming client receives the answer as it is generated. Rounds whose
``tool_choice`` forces a call run whole, as above; every other round is a streaming
model call whose content deltas reach the client as they arrive, while its tool-call
deltas are held until the round ends: server calls are then executed and the next
round streams on; the client's own calls go out (renumbered from 0) with
``finish_reason: tool_calls``. The client sees one stream (one id, one role delta, one
finish), and its usage (like ``usage`` of a whole answer) counts every round.

Tools come from two places: the ``switchyard.tools`` entry points (``web_fetch``, ...,
one tool each) and tool providers (``switchyard.tool_providers``: the MCP servers of
``tools.mcp``), which resolve names with their prefix (``mcp:calc.add``, ``mcp:calc.*``)
at ``validate``. A tool may be offered to the model under another name than its own
(its definition's function name: ``mcp__calc__add``, as OpenAI allows only
``[a-zA-Z0-9_-]``); the model's calls are mapped back by that name, and a client's
``tool_choice`` may name a server tool by either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from extensions.activation import Activation
from extensions.base import ChatCall, Extension, ExtensionServices, ModelCall, StreamCall
from extensions.pipeline import chunks_of
from extensions.tools import ServerTool, ToolContext, call_tool, load_providers, load_tools
from extensions.tools.config import ToolsConfig
from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET
from proxy.telemetry import span

if TYPE_CHECKING:
    from proxy.settings import Settings

log = logging.getLogger("switchyard.tools")


_TOOLS = "tools.server"
"""``call.scratch`` key: this request's server tools, by the name the model calls them."""


def _function_name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or {}).get("name", ""))


def _server_tools(call: ChatCall) -> dict[str, ServerTool]:
    return call.scratch.get(_TOOLS) or {}


class ToolsExtension(Extension):
    name = "tools"
    order = 40
    executes = True
    streams = True

    def __init__(self, services: ExtensionServices) -> None:
        super().__init__(services)
        self.config = services.settings.section("tools", ToolsConfig)
        self.tools = load_tools(self.config)
        self.providers = load_providers(self.config)

    def active(self, activation: Activation) -> bool:
        return bool(activation.tools)

    def busy(self) -> bool:
        return any(provider.busy() for provider in self.providers)

    def keep_on_reload(self, settings: Settings) -> bool:
        """Kept while ``tools:`` is unchanged and it holds providers: their connections
        (MCP servers, subprocesses) are not cheap to make again."""
        return bool(self.providers) and settings.section("tools", ToolsConfig) == self.config

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()

    async def _resolve(self, name: str) -> dict[str, ServerTool]:
        """The tools one activated name stands for, by their config names."""
        if name in self.tools:
            return {name: self.tools[name]}
        for provider in self.providers:
            if name.startswith(provider.prefix):
                return dict(await provider.resolve(name))
        known = [*self.tools, *(n for p in self.providers for n in p.known())]
        raise InvalidRequest(
            f"Unknown tool '{shown(name)}' (available: {', '.join(sorted(known)) or 'none'}).",
            param="tools",
        )

    async def validate(self, call: ChatCall) -> None:
        resolved: dict[str, ServerTool] = {}
        for name in call.activation.tools:
            resolved.update(await self._resolve(name))
        by_model_name = {_function_name(tool.definition()): tool for tool in resolved.values()}
        call.activation.tools = list(resolved)
        call.scratch[_TOOLS] = by_model_name
        client_names = {_function_name(t) for t in call.envelope.body.get("tools") or ()}
        clash = client_names & (set(resolved) | set(by_model_name))
        if clash:
            raise InvalidRequest(
                f"Tool name(s) {', '.join(sorted(clash))} are both client and server tools.",
                param="tools",
            )

    async def before_request(self, call: ChatCall) -> None:
        tools = _server_tools(call)
        definitions = [tool.definition() for tool in tools.values()]
        call.envelope.update(tools=[*(call.envelope.body.get("tools") or ()), *definitions])
        choice = call.envelope.body.get("tool_choice")
        function = choice.get("function") if isinstance(choice, dict) else None
        if isinstance(choice, dict) and isinstance(function, dict):
            for model_name, tool in tools.items():
                if function.get("name") == tool.name != model_name:  # named by its config name
                    renamed = {**function, "name": model_name}
                    call.envelope.update(tool_choice={**choice, "function": renamed})

    async def _run_one(self, call: ChatCall, tool_call: dict[str, Any]) -> dict[str, Any]:
        function = tool_call.get("function") or {}
        tools = _server_tools(call)
        model_name = function.get("name", "")
        tool = tools.get(model_name)
        name = tool.name if tool is not None else model_name
        context = ToolContext(
            http=self.services.http,
            config=self.config,
            rag=getattr(self.services.extensions.get("rag"), "store", None),
            rag_collections=list(call.activation.rag),
            key_id=call.key_id,
            team_id=call.team_id,
        )
        started = time.perf_counter()
        with span("tool.call", tool=name) as traced:
            try:
                result = await call_tool(tools, model_name, function.get("arguments"), context)
            except Exception:
                log.exception("tool %s failed", name)
                result = "error: the tool failed unexpectedly"
            outcome = "error" if result.startswith("error:") else "ok"
            traced.set("outcome", outcome)
        elapsed = time.perf_counter() - started
        self.services.metrics.tool_call(name, outcome, elapsed)
        log.info(
            "tool call",
            extra={"tool": name, "outcome": outcome, "ms": round(elapsed * 1000, 1)},
        )
        return {"role": "tool", "tool_call_id": tool_call.get("id", ""), "content": result}

    def _start_round(self, call: ChatCall, round_number: int) -> None:
        if round_number == self.config.max_rounds:
            call.envelope.update(tool_choice="none")

    async def _run_server_calls(
        self, call: ChatCall, content: Any, mine: list[dict[str, Any]]
    ) -> None:
        """Execute this round's server calls and append them, and their results, to the
        conversation; later rounds choose freely (the client's tool_choice applied to
        the first)."""
        results = await asyncio.gather(*(self._run_one(call, c) for c in mine))
        assistant = {"role": "assistant", "content": content, "tool_calls": mine}
        call.set_messages([*call.messages, assistant, *results])
        if call.envelope.params.tool_choice not in (UNSET, None, "none", "auto"):
            call.envelope.update(tool_choice="auto")

    @staticmethod
    def _split(call: ChatCall, calls: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        """A round's calls: the server's (run here), the client's (handed back)."""
        server = _server_tools(call)
        return (
            [c for c in calls if _function_name(c) in server],
            [c for c in calls if _function_name(c) not in server],
        )

    async def _whole_round(
        self, call: ChatCall, model_call: ModelCall, usage: _Usage
    ) -> tuple[dict[str, Any], bool]:
        """One round answered whole: the model's response (with the usage of every round
        so far) and whether it ends the loop. It does when the model called no server
        tool, or also called the client's tools: the server's calls run first, and the
        response then carries only the client's, to be handed back."""
        response = await model_call(call)
        usage.add(response.get("usage"))
        response = usage.into(response)
        choices = response.get("choices") or []
        message = (choices[0].get("message") if choices else None) or {}
        mine, theirs = self._split(call, message.get("tool_calls") or [])
        if not mine:
            return response, True
        await self._run_server_calls(call, message.get("content"), mine)
        if theirs:
            message["tool_calls"] = theirs
            return response, True
        return response, False

    async def execute(self, call: ChatCall, model_call: ModelCall) -> dict[str, Any]:
        usage = _Usage()
        for round_number in range(self.config.max_rounds + 1):
            self._start_round(call, round_number)
            response, finished = await self._whole_round(call, model_call, usage)
            if finished:
                return response
        return response

    async def execute_stream(
        self, call: ChatCall, model_call: ModelCall, stream_call: StreamCall
    ) -> AsyncIterator[dict[str, Any]]:
        usage = _Usage()
        include_usage = call.envelope.params.wants_usage_chunk
        round_number = 0
        while round_number < self.config.max_rounds and _forces_a_call(call):
            response, finished = await self._whole_round(call, model_call, usage)
            if finished:
                return _listed(chunks_of(response, include_usage))
            round_number += 1
        self._start_round(call, round_number)
        first = await stream_call(call)
        return self._streamed_rounds(call, first, stream_call, round_number, usage)

    async def _streamed_rounds(
        self,
        call: ChatCall,
        chunks: AsyncIterator[dict[str, Any]],
        stream_call: StreamCall,
        round_number: int,
        usage: _Usage,
    ) -> AsyncIterator[dict[str, Any]]:
        out = _OneStream()
        while True:
            held = _HeldCalls()
            finish: str | None = None
            async with aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    usage.add(chunk.get("usage"))
                    choice = (chunk.get("choices") or [None])[0]
                    if not choice:
                        continue
                    delta = choice.get("delta") or {}
                    held.add(delta.get("tool_calls") or ())
                    finish = choice.get("finish_reason") or finish
                    forwarded = out.content(chunk, choice, delta)
                    if forwarded is not None:
                        yield forwarded
            mine, theirs = self._split(call, held.calls())
            if mine:
                await self._run_server_calls(call, "".join(out.round_text) or None, mine)
            out.round_text.clear()
            if not mine or theirs or round_number >= self.config.max_rounds:
                for position, tool_call in enumerate(theirs):
                    yield out.chunk({"tool_calls": [{**tool_call, "index": position}]})
                yield out.chunk({}, "tool_calls" if theirs else (finish or "stop"))
                if call.envelope.params.wants_usage_chunk and usage.seen:
                    yield {**out.chunk({}), "choices": [], "usage": usage.total()}
                return
            round_number += 1
            self._start_round(call, round_number)
            chunks = await stream_call(call)


def _forces_a_call(call: ChatCall) -> bool:
    """Whether this round must call a tool (``required`` or a named function)."""
    choice = call.envelope.params.tool_choice
    return choice not in (UNSET, None, "none", "auto")


async def _listed(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


class _Usage:
    """Token usage summed over the rounds of one request."""

    def __init__(self) -> None:
        self.seen = False
        self.prompt = 0
        self.completion = 0

    def add(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.seen = True
            self.prompt += int(usage.get("prompt_tokens") or 0)
            self.completion += int(usage.get("completion_tokens") or 0)

    def total(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        }

    def into(self, response: dict[str, Any]) -> dict[str, Any]:
        if self.seen:
            response["usage"] = self.total()
        return response


class _HeldCalls:
    """A round's tool-call deltas, joined by index."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: Any) -> None:
        for delta in deltas:
            slot = self._calls.setdefault(
                delta.get("index", 0),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            slot["id"] = delta.get("id") or slot["id"]
            function = delta.get("function") or {}
            slot["function"]["name"] += function.get("name") or ""
            slot["function"]["arguments"] += function.get("arguments") or ""

    def calls(self) -> list[dict[str, Any]]:
        return [self._calls[i] for i in sorted(self._calls)]


class _OneStream:
    """Chunks of several rounds as one stream: the first round's id, created and model,
    one role delta, content only (tool calls and finish reasons are decided per round)."""

    def __init__(self) -> None:
        self.head: dict[str, Any] | None = None
        self.role_sent = False
        self.round_text: list[str] = []

    def content(
        self, chunk: dict[str, Any], choice: dict[str, Any], delta: dict[str, Any]
    ) -> dict[str, Any] | None:
        if self.head is None:
            self.head = {
                "id": chunk.get("id", ""),
                "object": "chat.completion.chunk",
                "created": chunk.get("created", 0),
                "model": chunk.get("model", ""),
            }
        text = delta.get("content")
        kept = {k: v for k, v in delta.items() if k not in ("tool_calls", "role")}
        if not self.role_sent:
            self.role_sent = True
            kept = {"role": "assistant", **kept, "content": text or ""}
        elif not text:
            return None
        if text:
            self.round_text.append(text)
        forwarded = {**choice, "delta": kept, "finish_reason": None}
        return {**self.head, "choices": [forwarded]}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**(self.head or {}), "choices": [choice]}
