"""Server-side tools: the gateway runs the tool loop itself.

Each round asks the model (non-streaming) with the server tools added to whatever tools
the client defined. Calls to server tools are executed here, concurrently, their results
appended, and the model asked again — up to ``tools.max_rounds`` rounds, after which it
must answer without tools. Calls to the client's own tools end the loop and go back to
the client as usual (server calls of that same turn are executed and kept in the
conversation, but not shown to the client, which could not answer them).

A streaming client receives the final answer as a stream of chunks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from extensions.activation import Activation
from extensions.base import ChatCall, Extension, ExtensionServices, ModelCall
from extensions.tools import ToolContext, call_tool, load_tools
from extensions.tools.config import ToolsConfig
from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET

log = logging.getLogger("switchyard.tools")


def _function_name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or {}).get("name", ""))


class ToolsExtension(Extension):
    name = "tools"
    order = 40
    executes = True

    def __init__(self, services: ExtensionServices) -> None:
        super().__init__(services)
        self.config = services.settings.section("tools", ToolsConfig)
        self.tools = load_tools(self.config)

    def active(self, activation: Activation) -> bool:
        return bool(activation.tools)

    async def validate(self, call: ChatCall) -> None:
        for name in call.activation.tools:
            if name not in self.tools:
                known = ", ".join(sorted(self.tools)) or "none"
                raise InvalidRequest(
                    f"Unknown tool '{shown(name)}' (available: {known}).", param="tools"
                )
        client_names = {_function_name(t) for t in call.envelope.body.get("tools") or ()}
        clash = client_names & set(call.activation.tools)
        if clash:
            raise InvalidRequest(
                f"Tool name(s) {', '.join(sorted(clash))} are both client and server tools.",
                param="tools",
            )

    async def before_request(self, call: ChatCall) -> None:
        definitions = [self.tools[name].definition() for name in call.activation.tools]
        call.envelope.update(tools=[*(call.envelope.body.get("tools") or ()), *definitions])

    async def _run_one(self, call: ChatCall, tool_call: dict[str, Any]) -> dict[str, Any]:
        function = tool_call.get("function") or {}
        name = function.get("name", "")
        context = ToolContext(
            http=self.services.http,
            config=self.config,
            rag=getattr(self.services.extensions.get("rag"), "store", None),
            rag_collections=list(call.activation.rag),
            key_id=call.key_id,
        )
        started = time.perf_counter()
        try:
            result = await call_tool(self.tools, name, function.get("arguments"), context)
        except Exception:
            log.exception("tool %s failed", name)
            result = "error: the tool failed unexpectedly"
        elapsed = time.perf_counter() - started
        outcome = "error" if result.startswith("error:") else "ok"
        self.services.metrics.tool_call(name, outcome, elapsed)
        log.info(
            "tool call",
            extra={"tool": name, "outcome": outcome, "ms": round(elapsed * 1000, 1)},
        )
        return {"role": "tool", "tool_call_id": tool_call.get("id", ""), "content": result}

    async def execute(self, call: ChatCall, model_call: ModelCall) -> dict[str, Any]:
        server = set(call.activation.tools)
        max_rounds = self.config.max_rounds
        for round_number in range(max_rounds + 1):
            if round_number == max_rounds:
                call.envelope.update(tool_choice="none")
            response = await model_call(call)
            choices = response.get("choices") or []
            message = (choices[0].get("message") if choices else None) or {}
            calls = message.get("tool_calls") or []
            mine = [c for c in calls if _function_name(c) in server]
            theirs = [c for c in calls if _function_name(c) not in server]
            if not mine:
                return response
            results = await asyncio.gather(*(self._run_one(call, c) for c in mine))
            assistant = {"role": "assistant", "content": message.get("content"), "tool_calls": mine}
            call.set_messages([*call.messages, assistant, *results])
            if theirs:
                message["tool_calls"] = theirs
                return response
            # The client's tool_choice applied to the first round; later rounds choose freely.
            if call.envelope.params.tool_choice not in (UNSET, None, "none", "auto"):
                call.envelope.update(tool_choice="auto")
        return response
