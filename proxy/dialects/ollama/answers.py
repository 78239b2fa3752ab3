"""Pure translators of results: chat completions, completions and their chunk streams
-> Ollama's answer objects (times passed in, never read from a clock). The rules are
listed in the package docstring (``proxy.dialects.ollama``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proxy.dialects.ollama.wire import Metrics
from proxy.errors import SwitchyardError, UpstreamError, shown
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk, ToolCallFunction, Usage
from proxy.schemas.completions import Completion


def timestamp(unix_s: float) -> str:
    """Go's RFC 3339 time with nanoseconds, as Ollama writes ``created_at``."""
    moment = datetime.fromtimestamp(unix_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def done_reason(finish_reason: str | None) -> str:
    """Ollama's ``done_reason``: ``length`` when cut at the token limit, else ``stop``
    (Ollama says ``stop`` after tool calls too)."""
    return "length" if finish_reason == "length" else "stop"


def arguments_object(
    raw: str | None, name: str, error: type[SwitchyardError] = UpstreamError
) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) as the object Ollama sends; ``error``: what
    to raise when they are not one (the model's fault by default)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise error(f"The arguments for tool '{shown(name)}' are not a JSON object: {shown(raw)}")
    return value


def ollama_tool_calls(
    calls: list[tuple[str, str, str]], finish_reason: str | None = None
) -> list[dict[str, Any]]:
    """``(id, name, arguments JSON)`` triples as Ollama's tool calls (arguments as an
    object, an ``index`` per call). When the output was cut at the token limit
    (``finish_reason`` ``length``), a call whose arguments are not a whole JSON object
    is the one cut off mid-way: it is dropped (the answer says ``done_reason: length``);
    on any other finish such arguments are the model's error."""
    out: list[dict[str, Any]] = []
    for ident, name, args in calls:
        try:
            arguments = arguments_object(args, name)
        except UpstreamError:
            if finish_reason == "length":
                continue
            raise
        function = {"index": len(out), "name": name, "arguments": arguments}
        out.append({"id": ident, "function": function})
    return out


@dataclass(slots=True)
class Timing:
    """What the route measured, in seconds (``None``: unknown)."""

    total_s: float
    prompt_eval_s: float | None = None
    eval_s: float | None = None


def metrics(usage: Usage | None, timing: Timing) -> Metrics:
    def ns(seconds: float | None) -> int:
        return max(0, int(seconds * 1e9)) if seconds is not None else 0

    return Metrics(
        total_duration=ns(timing.total_s),
        prompt_eval_count=usage.prompt_tokens if usage is not None else 0,
        prompt_eval_duration=ns(timing.prompt_eval_s),
        eval_count=usage.completion_tokens if usage is not None else 0,
        eval_duration=ns(timing.eval_s),
    )


def _metric_fields(m: Metrics) -> dict[str, int]:
    return {k: v for k in Metrics.__struct_fields__ if (v := getattr(m, k))}


def chat_answer(
    completion: ChatCompletion, model: str, created: float, timing: Timing
) -> dict[str, Any]:
    """A non-streaming chat completion as Ollama's ``/api/chat`` answer."""
    choice = completion.choices[0]
    message: dict[str, Any] = {"role": "assistant", "content": choice.message.content or ""}
    calls = choice.message.tool_calls
    if isinstance(calls, list) and calls:
        whole = ollama_tool_calls(
            [(c.id, str(c.function.name or ""), str(c.function.arguments or "")) for c in calls],
            choice.finish_reason,
        )
        if whole:
            message["tool_calls"] = whole
    usage = completion.usage if isinstance(completion.usage, Usage) else None
    return {
        "model": model,
        "created_at": timestamp(created),
        "message": message,
        "done": True,
        "done_reason": done_reason(choice.finish_reason),
        **_metric_fields(metrics(usage, timing)),
    }


def generate_answer(
    text: str, finish_reason: str | None, usage: Usage | None, model: str, created: float,
    timing: Timing,
) -> dict[str, Any]:  # fmt: skip
    """The final ``/api/generate`` object (non-streaming: with the whole ``response``)."""
    return {
        "model": model,
        "created_at": timestamp(created),
        "response": text,
        "done": True,
        "done_reason": done_reason(finish_reason),
        **_metric_fields(metrics(usage, timing)),
    }


def completion_text(completion: Completion | ChatCompletion) -> tuple[str, str | None]:
    """The text and finish reason of a completion of either kind."""
    choice = completion.choices[0]
    if isinstance(completion, ChatCompletion):
        return completion.choices[0].message.content or "", choice.finish_reason
    return completion.choices[0].text, choice.finish_reason  # type: ignore[union-attr]


@dataclass(slots=True)
class StreamState:
    """Reads the internal chunk stream of one answer: content pieces come out at once,
    tool calls are gathered (Ollama sends each call whole, arguments parsed), the
    finish reason and usage are kept for the final object."""

    finish_reason: str | None = None
    usage: Usage | None = None
    calls: dict[int, list[str]] = field(default_factory=dict)
    """index -> [id, name, arguments so far]"""
    first_content_at: float | None = None

    def text_of(self, chunk: ChatCompletionChunk | Completion) -> str:
        """The new text in ``chunk`` (recording tool calls, finish and usage)."""
        if isinstance(chunk.usage, Usage):
            self.usage = chunk.usage
        text = ""
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
            if isinstance(chunk, Completion):
                text += choice.text  # type: ignore[union-attr]
                continue
            delta = choice.delta  # type: ignore[union-attr]
            if isinstance(delta.content, str):
                text += delta.content
            if isinstance(delta.tool_calls, list):
                for call in delta.tool_calls:
                    entry = self.calls.setdefault(call.index, ["", "", ""])
                    if isinstance(call.id, str):
                        entry[0] = call.id
                    function = call.function
                    if isinstance(function, ToolCallFunction):
                        if isinstance(function.name, str) and function.name:
                            entry[1] = function.name
                        if isinstance(function.arguments, str):
                            entry[2] += function.arguments
        return text

    def tool_calls(self) -> list[dict[str, Any]]:
        ordered = [self.calls[i] for i in sorted(self.calls)]
        return ollama_tool_calls(
            [(e[0] or f"call_{n}", e[1], e[2]) for n, e in enumerate(ordered)], self.finish_reason
        )


def chat_piece(model: str, created: float, content: str, **message: Any) -> dict[str, Any]:
    """One streamed ``/api/chat`` object that is not the last."""
    return {
        "model": model,
        "created_at": timestamp(created),
        "message": {"role": "assistant", "content": content, **message},
        "done": False,
    }


def chat_final(state: StreamState, model: str, created: float, timing: Timing) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": timestamp(created),
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": done_reason(state.finish_reason),
        **_metric_fields(metrics(state.usage, timing)),
    }


def generate_piece(model: str, created: float, text: str) -> dict[str, Any]:
    return {"model": model, "created_at": timestamp(created), "response": text, "done": False}
