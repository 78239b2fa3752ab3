"""The fake OpenAI upstream's ``POST /v1/responses``, as OpenAI answers it (for the
native pass-through tests).

Non-streaming: a ``response`` object with one ``message`` output item. Streaming: the
events OpenAI sends, each as ``event: <type>`` + ``data: <json>`` with consecutive
``sequence_number``s: ``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta`` per word, ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``, ``response.completed``
(with usage); no ``[DONE]``. The text is ``Hello! You said: <last user text>``, with
the ``previous_response_id`` named when one was given (the fake keeps no state).
``stop`` is asked before each event (its position) whether to end the body there, with
no terminal event: the fake's ``truncate`` fault (a stream cut partway) and ``hold``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

CREATED = 1_700_000_000


def _last_user_text(body: dict[str, Any]) -> str:
    given = body.get("input")
    if isinstance(given, str):
        return given
    for item in reversed(given if isinstance(given, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or () if isinstance(p, dict))
    return ""


def reply_text(body: dict[str, Any]) -> str:
    text = f"Hello! You said: {_last_user_text(body)}"
    if body.get("previous_response_id"):
        text += f" (after {body['previous_response_id']})"
    return text


def _response(body: dict[str, Any], ident: str, status: str, output: list[Any]) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }


def _usage(body: dict[str, Any], words: int) -> dict[str, Any]:
    prompt = len(_last_user_text(body).split())
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": words,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + words,
    }


def responses_events(body: dict[str, Any], ident: str) -> list[dict[str, Any]]:
    """The stream OpenAI sends for one text answer, sequence numbers included."""
    text = reply_text(body)
    words = text.split(" ")
    deltas = [words[0]] + [" " + w for w in words[1:]]
    item_id = f"msg_{ident}"
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    message = {"id": item_id, "type": "message", "status": "in_progress", "content": [],
               "role": "assistant"}  # fmt: skip
    done_part = {**part, "text": text}
    done_message = {**message, "status": "completed", "content": [done_part]}
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(body, ident, "in_progress", [])},
        {"type": "response.in_progress", "response": _response(body, ident, "in_progress", [])},
        {"type": "response.output_item.added", "output_index": 0, "item": message},
        {"type": "response.content_part.added", **at, "part": part},
        *({"type": "response.output_text.delta", **at, "delta": d, "logprobs": []} for d in deltas),
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": done_part},
        {"type": "response.output_item.done", "output_index": 0, "item": done_message},
    ]
    final = _response(body, ident, "completed", [done_message])
    final["usage"] = _usage(body, len(deltas))
    events.append({"type": "response.completed", "response": final})
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def response_object(body: dict[str, Any], ident: str) -> dict[str, Any]:
    return responses_events(body, ident)[-1]["response"]  # type: ignore[no-any-return]


async def send_responses(
    send: Any,
    body: dict[str, Any],
    ident: str,
    stop: Callable[[int], Awaitable[bool]] | None = None,
) -> None:
    """Answer ``POST /v1/responses`` (``send`` is the ASGI send); a stream ends early
    where ``stop`` (awaited before each event, with its position) says so."""
    if not body.get("stream"):
        content = json.dumps(response_object(body, ident)).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        return
    headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for position, event in enumerate(responses_events(body, ident)):
        if stop is not None and await stop(position):
            break
        frame = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
        await send({"type": "http.response.body", "body": frame, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})
