"""A small, protocol-faithful Anthropic Messages API for tests, served for real.

It speaks what ``api.anthropic.com`` speaks (shapes from the official SDK's
``anthropic/types`` and the streaming and errors pages of Anthropic's API reference):

- ``POST /v1/messages`` needs the key, as ``x-api-key`` or (as the SDK now sends it)
  ``Authorization: Bearer`` (401 ``authentication_error`` otherwise), and
  ``anthropic-version`` (400), ``model``, ``max_tokens`` and ``messages``. It checks
  what the real API refuses: roles other than user/assistant in ``messages``, a
  ``tool_result`` whose ``tool_use_id`` is not a ``tool_use`` of the assistant turn just
  before it, a ``tool_use`` left without its ``tool_result`` in the next user turn,
  tool results that do not come first in their turn, empty text blocks. It is stricter
  than the real API in one way: two consecutive turns of one role are a 400 (the real
  API merges them), so tests see that the gateway alternates them itself.
- Answers: a ``tool_result`` in the last turn -> "The tool said: ..."; tools offered,
  ``tool_choice`` not ``none`` and either ``any``/``tool`` or the phrase
  ``TOOL_TRIGGER`` in the prompt -> ``tool_use`` blocks (two when two tools are
  offered and parallel use is not disabled), ``stop_reason: tool_use``; an
  ``output_config.format`` JSON schema -> a JSON object of its properties; otherwise
  "Hello! You said: <last user text>". ``stop_sequences`` cut the text (``stop_sequence``)
  and ``max_tokens`` counts words (``max_tokens``).
- Usage: ``input_tokens`` counts the words of the system prompt and the messages,
  except the system blocks marked ``cache_control``, which are
  ``cache_read_input_tokens``; ``output_tokens`` counts the text's words (5 per tool use).
- Streams are framed as the API frames them: ``event: <type>`` and ``data: {json}``;
  ``message_start`` (empty content, ``output_tokens: 1``), per block
  ``content_block_start``, (``ping`` after the first one), deltas (``text_delta`` per
  word; ``input_json_delta`` starting with an empty fragment, then 6-character pieces),
  ``content_block_stop``, then ``message_delta`` (stop reason, cumulative
  ``output_tokens``) and ``message_stop``.
- ``POST /v1/messages/count_tokens`` counts as above (plus one per tool offered);
  ``GET /v1/models`` lists models.

Every request is recorded (headers and JSON body). Faults are chosen per model id:
a status with Anthropic's error body (``retry-after`` on 429), or, in a stream, an
``error`` event after some events, or a body cut before ``message_stop``. Every
answer sets a cookie, so tests can check that the gateway never sends one back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_openai import Recorded
from tests.support.servers import answer_lifespan, read_body, serve_asgi

Send = Callable[[dict[str, Any]], Awaitable[None]]

API_KEY = "sk-ant-fake-key"
MODELS = ("claude-fake-1", "claude-fake-2")
TOOL_TRIGGER = "use a tool"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Fault:
    """How the fake misbehaves for one model id.

    kind:
      ``status``       answer ``status`` with Anthropic's error body (and ``headers``)
      ``error_event``  stream ``after`` events, then an ``error`` event of ``error_type``
      ``truncate``     stream ``after`` events, then end the body
    ``times``: apply to the first N matching requests only (None: always).
    """

    kind: str
    status: int = 500
    message: str = "fake upstream failure"
    error_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 3
    times: int | None = None


def status_fault(status: int, message: str = "fake upstream failure", **kw: Any) -> Fault:
    return Fault("status", status=status, message=message, **kw)


def rate_limited(retry_after: str = "7", **kw: Any) -> Fault:
    return Fault(
        "status",
        status=429,
        message="Number of request tokens has exceeded your per-minute rate limit",
        headers={"retry-after": retry_after},
        **kw,
    )


class BadRequest(Exception):
    """What the real API would refuse with a 400 ``invalid_request_error``."""


# ------------------------------------------------------------------ reading requests


def _words(text: str) -> int:
    return len(text.split())


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    if block.get("type") == "text":
        return str(block.get("text", ""))
    if block.get("type") == "tool_result":
        return _content_text(block.get("content"))
    if block.get("type") == "tool_use":
        return json.dumps(block.get("input"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_block_text(b) for b in content)
    return ""


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def check_request(body: Any) -> None:
    """Raise ``BadRequest`` for what the Messages API refuses."""
    if not isinstance(body, dict):
        raise BadRequest("The request body is not valid JSON.")
    if not isinstance(body.get("model"), str):
        raise BadRequest("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise BadRequest("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise BadRequest("system: Input should be a valid string or a list of text blocks")
    if isinstance(system, list) and any(b.get("type") != "text" for b in system):
        raise BadRequest("system: Input should be a valid string or a list of text blocks")
    pending: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise BadRequest(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        if index and messages[index - 1].get("role") == role:
            raise BadRequest(f"messages.{index}: roles must alternate between user and assistant")
        blocks = _blocks(message.get("content"))
        final_assistant = role == "assistant" and index == len(messages) - 1
        if not final_assistant and any(
            b.get("type") == "text" and not b.get("text") for b in blocks
        ):
            raise BadRequest(f"messages.{index}: text content blocks must be non-empty")
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if pending:
            answered = {b.get("tool_use_id") for b in results}
            if role != "user" or answered != pending:
                raise BadRequest(
                    f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(sorted(pending - answered))}"
                )
            if blocks[: len(results)] != results:
                raise BadRequest(f"messages.{index}: tool_result blocks must come first")
        elif results:
            raise BadRequest(
                f"messages.{index}.content.0: unexpected `tool_use_id` found in `tool_result` "
                "blocks: each tool_result block must have a corresponding tool_use block in "
                "the previous message"
            )
        pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        if pending and role != "assistant":
            raise BadRequest(f"messages.{index}: tool_use blocks belong to assistant messages")
    if pending:
        raise BadRequest("the last message's tool_use blocks have no tool_result")


def _system_tokens(system: Any) -> tuple[int, int]:
    """(uncached, cache-read) words of the system prompt."""
    if isinstance(system, str):
        return _words(system), 0
    uncached = cached = 0
    for block in system or []:
        count = _words(block.get("text", ""))
        if "cache_control" in block:
            cached += count
        else:
            uncached += count
    return uncached, cached


# ------------------------------------------------------------------------ answers


@dataclass
class Answer:
    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int
    cache_read: int
    output_tokens: int


def _tool_uses(body: dict[str, Any], ident: str) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return []
    last = body["messages"][-1]
    if any(b.get("type") == "tool_result" for b in _blocks(last.get("content"))):
        return []
    forced = choice.get("type") in ("any", "tool")
    if not forced and TOOL_TRIGGER not in _content_text(last.get("content")):
        return []
    if choice.get("type") == "tool":
        tools = [t for t in tools if t.get("name") == choice.get("name")]
    limit = 1 if choice.get("disable_parallel_tool_use") else 2
    uses = []
    for index, tool in enumerate(tools[:limit]):
        properties = (tool.get("input_schema") or {}).get("properties") or {}
        uses.append(
            {
                "type": "tool_use",
                "id": f"toolu_{ident}_{index}",
                "name": tool.get("name"),
                "input": {name: f"value of {name}" for name in properties},
            }
        )
    return uses


def _reply_text(body: dict[str, Any]) -> str:
    last = body["messages"][-1]
    results = [b for b in _blocks(last.get("content")) if b.get("type") == "tool_result"]
    if results:
        return "The tool said: " + " | ".join(_content_text(r.get("content")) for r in results)
    schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
    if isinstance(schema, dict):
        properties = schema.get("properties") or {}
        return json.dumps({name: f"value of {name}" for name in properties})
    return "Hello! You said: " + _content_text(last.get("content"))


def answer(body: dict[str, Any], ident: str) -> Answer:
    uncached, cached = _system_tokens(body.get("system"))
    uncached += sum(_words(_content_text(m.get("content"))) for m in body["messages"])
    uses = _tool_uses(body, ident)
    if uses:
        return Answer(uses, "tool_use", None, uncached, cached, 5 * len(uses))
    text = _reply_text(body)
    stop_reason, stop_sequence = "end_turn", None
    for sequence in body.get("stop_sequences") or []:
        if sequence in text:
            text, stop_reason, stop_sequence = (
                text[: text.index(sequence)],
                "stop_sequence",
                sequence,
            )
    words = text.split(" ")
    if len(words) > body["max_tokens"]:
        text, stop_reason, stop_sequence = " ".join(words[: body["max_tokens"]]), "max_tokens", None
    blocks = [{"type": "text", "text": text}]
    return Answer(blocks, stop_reason, stop_sequence, uncached, cached, len(text.split(" ")))


def text_deltas(text: str) -> list[str]:
    """Split like a tokenizer would: each word with its leading space."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def json_pieces(text: str) -> list[str]:
    return [""] + [text[i : i + 6] for i in range(0, len(text), 6)]


def stream_events(body: dict[str, Any], ident: str, reply: Answer) -> list[dict[str, Any]]:
    """The events of a streamed answer, in the API's order."""
    usage = {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": reply.cache_read,
        "output_tokens": 1,
    }
    message = {
        "id": f"msg_{ident}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    for index, block in enumerate(reply.blocks):
        if block["type"] == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in text_deltas(block["text"])]
        else:
            start = {**block, "input": {}}
            arguments = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": p} for p in json_pieces(arguments)
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        if index == 0:
            events.append({"type": "ping"})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            "usage": {"output_tokens": reply.output_tokens},
        }
    )
    events.append({"type": "message_stop"})
    return events


def message_of(body: dict[str, Any], ident: str, reply: Answer) -> dict[str, Any]:
    return {
        "id": f"msg_{ident}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": reply.blocks,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": {
            "input_tokens": reply.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": reply.cache_read,
            "output_tokens": reply.output_tokens,
        },
    }


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


# ------------------------------------------------------------------------- the app


class FakeAnthropic:
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.faults: dict[str, Fault] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._counter = 0

    def clear(self) -> None:
        """Forget requests and faults, and number messages from 1 again."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self._counter = 0

    def received(self, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def last(self, path: str = "/v1/messages") -> Recorded:
        found = self.received(path)
        assert found, f"the fake Anthropic API received no request for {path}"
        return found[-1]

    def _next_id(self) -> str:
        with self._lock:
            self._counter += 1
            return f"fake{self._counter}"

    def _fault_for(self, model: Any) -> Fault | None:
        with self._lock:
            fault = self.faults.get(model) if isinstance(model, str) else None
            if fault is None or fault.times is None:
                return fault
            if fault.times <= 0:
                return None
            fault.times -= 1
            return fault

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = Recorded(scope["method"], scope["path"], headers, body, 0.0)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            record.model = body["model"]
        with self._lock:
            self.requests.append(record)
        await self._handle(record, body, send)

    async def _handle(self, record: Recorded, body: Any, send: Send) -> None:
        bearer = record.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (record.headers.get("x-api-key"), bearer):
            await self._error(send, 401, "invalid x-api-key")
            return
        if record.method == "GET" and record.path == "/v1/models":
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in MODELS
            ]
            page = {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
            await self._json(send, 200, page)
            return
        if record.method == "POST" and record.path == "/v1/messages/count_tokens":
            await self._count_tokens(record, body, send)
            return
        if record.method != "POST" or record.path != "/v1/messages":
            await self._error(send, 404, f"Not found: {record.path}")
            return
        if not record.headers.get("anthropic-version"):
            await self._error(send, 400, "anthropic-version: header is required")
            return
        try:
            check_request(body)
        except BadRequest as exc:
            await self._error(send, 400, str(exc))
            return
        fault = self._fault_for(record.model)
        if fault is not None and fault.kind == "status":
            await self._error(send, fault.status, fault.message, fault.error_type, fault.headers)
            return
        ident = self._next_id()
        reply = answer(body, ident)
        if not body.get("stream"):
            await self._json(send, 200, message_of(body, ident, reply))
            return
        await self._stream(send, stream_events(body, ident, reply), fault)

    async def _count_tokens(self, record: Recorded, body: Any, send: Send) -> None:
        """``{"input_tokens": N}``: the words of the system prompt and messages, and one
        per tool offered (the request is checked as a message request is, but needs no
        ``max_tokens``, and refuses one)."""
        if not record.headers.get("anthropic-version"):
            await self._error(send, 400, "anthropic-version: header is required")
            return
        try:
            if isinstance(body, dict) and "max_tokens" in body:
                raise BadRequest("max_tokens: Extra inputs are not permitted")
            check_request({**body, "max_tokens": 1} if isinstance(body, dict) else body)
        except BadRequest as exc:
            await self._error(send, 400, str(exc))
            return
        reply = answer({**body, "max_tokens": 1, "tool_choice": {"type": "none"}}, "count")
        tools = len(body.get("tools") or [])
        await self._json(send, 200, {"input_tokens": reply.input_tokens + reply.cache_read + tools})

    async def _start(self, send: Send, status: int, content_type: bytes, extra: Any = ()) -> None:
        head = [
            (b"content-type", content_type),
            (b"request-id", b"req_fake"),
            (b"set-cookie", b"anthropic_session=fake; Path=/; Max-Age=3600"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": head})

    async def _json(self, send: Send, status: int, payload: Any, extra: Any = ()) -> None:
        await self._start(send, status, b"application/json", extra)
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    async def _error(
        self,
        send: Send,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        error = {"type": error_type or ERROR_TYPES.get(status, "api_error"), "message": message}
        payload = {"type": "error", "error": error, "request_id": "req_fake"}
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await self._json(send, status, payload, extra)

    async def _stream(self, send: Send, events: list[dict[str, Any]], fault: Fault | None) -> None:
        await self._start(send, 200, b"text/event-stream; charset=utf-8")
        for position, event in enumerate(events):
            if fault is not None and position == fault.after:
                if fault.kind == "error_event":
                    error = {
                        "type": fault.error_type or "overloaded_error",
                        "message": fault.message,
                    }
                    frame = sse({"type": "error", "error": error})
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({"type": "http.response.body", "body": sse(event), "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@contextmanager
def running_fake_anthropic() -> Iterator[tuple[FakeAnthropic, str]]:
    """Serve a ``FakeAnthropic`` on a free port; yields it and its root URL."""
    fake = FakeAnthropic()
    with serve_asgi(fake) as server:
        yield fake, server.url
