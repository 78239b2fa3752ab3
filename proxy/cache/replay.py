"""Between a stored answer and a stream: replaying one, and assembling one.

A cached answer is always the whole response a non-streaming request gets (the
``ChatCompletion``, ``Completion`` or embeddings list, usage included). ``replay`` turns
it into the chunks a streaming client expects, shaped as openai-python's
``ChatCompletionChunk`` / streamed ``Completion``: for chat a role chunk, the content,
the tool calls, the finish chunk, then the usage chunk (``choices: []``) when the client
asked ``stream_options.include_usage``. ``Assembler`` keeps the items of a stream that is
passed through (a list append per item: nothing is decoded on the way) and builds the
stored answer once the stream ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from adapters.base import CallStats

FINISHED = frozenset({"stop", "length", "tool_calls"})
"""Finish reasons of complete answers: only those are cached (not ``content_filter``,
an error, or a stream that ended without one)."""

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


class _FinishChoice(msgspec.Struct):
    finish_reason: str | None = None


class _FinishProbe(msgspec.Struct):
    choices: list[_FinishChoice] | None = None
    data: list[Any] | None = None


def cacheable(content: bytes) -> bool:
    """Whether an encoded answer is complete: embeddings with data, or every choice
    finished with one of ``FINISHED``."""
    try:
        probe = _decode(content, type=_FinishProbe)
    except msgspec.DecodeError:
        return False
    if probe.data is not None:
        return True
    choices = probe.choices
    return bool(choices) and all(c.finish_reason in FINISHED for c in choices)  # type: ignore[union-attr]


def _head(answer: dict[str, Any], kind: str) -> dict[str, Any]:
    head = {
        "id": answer.get("id", ""),
        "object": kind,
        "created": answer.get("created", 0),
        "model": answer.get("model", ""),
    }
    if answer.get("system_fingerprint"):
        head["system_fingerprint"] = answer["system_fingerprint"]
    return head


def chat_chunks(answer: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    head = _head(answer, "chat.completion.chunk")
    chunks: list[dict[str, Any]] = []

    def chunk(
        index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> None:
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        chunks.append({**head, "choices": [choice]})

    for choice in answer.get("choices") or ():
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        chunk(index, {"role": "assistant", "content": ""})
        # The whole text in one delta, with the log probabilities of all its tokens.
        if message.get("content"):
            chunk(index, {"content": message["content"]}, logprobs=choice.get("logprobs"))
        elif message.get("refusal"):
            chunk(index, {"refusal": message["refusal"]}, logprobs=choice.get("logprobs"))
        for position, call in enumerate(message.get("tool_calls") or ()):
            chunk(index, {"tool_calls": [{"index": position, **call}]})
        chunk(index, {}, choice.get("finish_reason"))
    if include_usage and answer.get("usage"):
        chunks.append({**head, "choices": [], "usage": answer["usage"]})
    return chunks


def completion_chunks(answer: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    head = _head(answer, "text_completion")
    chunks: list[dict[str, Any]] = []
    for choice in answer.get("choices") or ():
        index = choice.get("index", 0)
        pieces = (
            (choice.get("text") or "", None, choice.get("logprobs")),
            ("", choice.get("finish_reason"), None),
        )
        for text, finish, logprobs in pieces:
            choices = [
                {"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}
            ]
            chunks.append({**head, "choices": choices})
    if include_usage and answer.get("usage"):
        chunks.append({**head, "choices": [], "usage": answer["usage"]})
    return chunks


REPLAYS = {"chat": chat_chunks, "completions": completion_chunks}
"""Replay by route; a route that has no entry (embeddings) is never streamed."""


async def replay(route: str, content: bytes, include_usage: bool) -> AsyncIterator[bytes]:
    """The SSE events of a stored answer (``proxy.streaming`` adds ``[DONE]``)."""
    for chunk in REPLAYS[route](_decode(content), include_usage):
        yield b"data: " + _encode(chunk) + b"\n\n"


def _chunks(items: list[Any]) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, bytes):
            chunks.append(msgspec.to_builtins(item))
            continue
        for line in item.split(b"\n"):
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload and payload != b"[DONE]":
                    chunks.append(_decode(payload))
    return chunks


class Assembler:
    """Collects a passed-through stream; ``answer`` builds the whole response from it."""

    __slots__ = ("items", "route")

    def __init__(self, route: str) -> None:
        self.route = route
        self.items: list[Any] = []

    def answer(self, stats: CallStats) -> bytes | None:
        """The encoded whole answer, or ``None`` when the stream was not complete."""
        try:
            chunks = _chunks(self.items)
        except msgspec.DecodeError:
            return None
        if not chunks or any("error" in c for c in chunks):
            return None
        first = chunks[0]
        chat = self.route == "chat"
        answer: dict[str, Any] = {
            "id": first.get("id", ""),
            "object": "chat.completion" if chat else "text_completion",
            "created": first.get("created", 0),
            "model": first.get("model", ""),
        }
        if first.get("system_fingerprint"):
            answer["system_fingerprint"] = first["system_fingerprint"]
        choices: dict[int, dict[str, Any]] = {}
        usage = None
        for chunk in chunks:
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                index = choice.get("index", 0)
                slot = choices.get(index)
                if slot is None:
                    slot = choices[index] = _slot(index, chat)
                _merge(slot, choice, chat)
        if not choices or any(c["finish_reason"] not in FINISHED for c in choices.values()):
            return None
        answer["choices"] = [_finished(choices[i], chat) for i in sorted(choices)]
        if usage is None and (stats.prompt_tokens or stats.completion_tokens):
            usage = {
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            }
        if usage is not None:
            answer["usage"] = usage
        return _encode(answer)


def _slot(index: int, chat: bool) -> dict[str, Any]:
    if chat:
        return {
            "index": index,
            "content": [],
            "refusal": [],
            "tool_calls": {},
            "logprobs": {},
            "finish_reason": None,
        }
    return {"index": index, "text": [], "logprobs": {}, "finish_reason": None}


def _merge(slot: dict[str, Any], choice: dict[str, Any], chat: bool) -> None:
    if choice.get("finish_reason"):
        slot["finish_reason"] = choice["finish_reason"]
    _merge_logprobs(slot["logprobs"], choice.get("logprobs"))
    if not chat:
        if choice.get("text"):
            slot["text"].append(choice["text"])
        return
    delta = choice.get("delta") or {}
    if delta.get("content"):
        slot["content"].append(delta["content"])
    if delta.get("refusal"):
        slot["refusal"].append(delta["refusal"])
    for call in delta.get("tool_calls") or ():
        found = slot["tool_calls"].setdefault(
            call.get("index", 0),
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        found["id"] = call.get("id") or found["id"]
        function = call.get("function") or {}
        found["function"]["name"] += function.get("name") or ""
        found["function"]["arguments"] += function.get("arguments") or ""


def _merge_logprobs(merged: dict[str, Any], piece: Any) -> None:
    """Append a chunk's log probabilities: each list field (chat's ``content`` and
    ``refusal``, completions' ``tokens``, ``token_logprobs``, ``top_logprobs``,
    ``text_offset``) continues where the previous chunk's ended."""
    if not isinstance(piece, dict):
        return
    for field, values in piece.items():
        if isinstance(values, list):
            merged.setdefault(field, []).extend(values)


def _finished(slot: dict[str, Any], chat: bool) -> dict[str, Any]:
    logprobs = slot["logprobs"] or None
    if not chat:
        return {
            "index": slot["index"],
            "text": "".join(slot["text"]),
            "finish_reason": slot["finish_reason"],
            "logprobs": logprobs,
        }
    message: dict[str, Any] = {"role": "assistant", "content": "".join(slot["content"]) or None}
    if slot["refusal"]:
        message["refusal"] = "".join(slot["refusal"])
    if slot["tool_calls"]:
        message["tool_calls"] = [slot["tool_calls"][i] for i in sorted(slot["tool_calls"])]
    return {
        "index": slot["index"],
        "message": message,
        "finish_reason": slot["finish_reason"],
        "logprobs": logprobs,
    }
