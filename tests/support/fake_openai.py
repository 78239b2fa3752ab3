"""A small, protocol-faithful OpenAI-compatible upstream for tests, served for real.

It speaks the wire format the official API speaks: chat completions (with tool calls),
the Responses API (text answers, streamed as OpenAI streams them),
legacy completions (with ``suffix`` and ``echo``), embeddings (float and base64, with
``dimensions``), reranking (``/v1/rerank`` as Jina's API answers it: ``results`` sorted
by ``relevance_score`` with ``document: {text}`` unless ``return_documents`` is false,
cut to ``top_n``, and ``usage.total_tokens``), and streams framed as the API frames
them: a role chunk, content deltas, tool-call deltas split across several chunks (id
and name first, arguments in pieces), a finish chunk, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``. Function names
(in ``tools`` and in assistant ``tool_calls``) are checked as the API checks them
(``^[a-zA-Z0-9_-]+$``, 64 characters at most): an invalid one gets the API's 400. A
tool call's arguments are what the last user message spells ``name=value``
(``a=2 b=3``), typed by the tool's schema, or placeholders. Each call costs
``TOOL_CALL_TOKENS`` completion tokens: a ``max_tokens`` (or ``max_completion_tokens``)
below that cuts the output as the API does, in the middle of the first call's
arguments (no further calls), with ``finish_reason: "length"``.

Every request is recorded (headers and JSON body) so tests can assert what reached the
upstream. Faults are chosen per upstream model id (``FakeOpenAI(faults={"m": ...})``),
so one server can play a healthy and a broken deployment side by side. A refused
connection needs no fault: point a deployment at a closed port (``free_port()``).

It is a raw ASGI app: after the body is read, a watcher waits on ``receive()`` so the
fake notices (and records) a client that goes away mid-response, and every pause is
cut short by it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_openai_responses import send_responses
from tests.support.servers import RunningServer, answer_lifespan, read_body, serve_asgi

Send = Callable[[dict[str, Any]], Awaitable[None]]

CREATED = 1_700_000_000
FINGERPRINT = "fp_fake"
DEFAULT_DIMENSIONS = 8


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """How the fake misbehaves for one upstream model id.

    kind:
      ``status``    answer ``status`` with an OpenAI error body (and ``headers``)
      ``delay``     wait ``seconds`` before answering (past the gateway's timeout)
      ``stall``     stream ``after`` chunks, then send nothing for ``seconds``
      ``malformed`` stream ``after`` chunks, pause, then a ``data:`` line that is not JSON
      ``drip``      stream up to 400 chunks, one every ``seconds``, until the client leaves
      ``truncate``  stream ``after`` chunks, then end the body without ``[DONE]`` (on
                    ``/v1/responses``: ``after`` events, with no terminal event)
      ``hold``      stream ``after`` chunks, wait until the test sets ``release``, then
                    the rest
    ``times``: apply to the first N matching requests only, then behave (None: always).
    """

    kind: str
    status: int = 500
    message: str = "fake upstream failure"
    error_type: str = "server_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 30.0
    after: int = 2
    times: int | None = None
    release: threading.Event = field(default_factory=threading.Event)


def status_fault(status: int, message: str = "fake upstream failure", **kw: Any) -> Fault:
    return Fault("status", status=status, message=message, **kw)


def rate_limited(retry_after: str = "2", **kw: Any) -> Fault:
    return Fault(
        "status",
        status=429,
        message="Rate limit reached for requests",
        error_type="requests",
        code="rate_limit_exceeded",
        headers={"retry-after": retry_after},
        **kw,
    )


# ------------------------------------------------------------------------- records


@dataclass
class Recorded:
    """One request as the fake received it; ``disconnected_at`` is set (monotonic time)
    if the client went away before the response was complete."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float
    model: str | None = None
    chunks_sent: int = 0
    completed: bool = False
    disconnected_at: float | None = None


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(0.005)


# ----------------------------------------------------------------- response content


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _content_deltas(text: str) -> list[str]:
    """Split like a tokenizer would: each word with its leading space."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


#: What the API accepts as a function name (tools and assistant tool calls alike).
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
FUNCTION_NAME_MAX = 64


def function_name_error(body: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(message, param, code)`` of the 400 the API answers for an invalid function
    name in ``tools`` or in an assistant message's ``tool_calls``, else None."""
    names = [
        (f"tools[{i}].function.name", (tool.get("function") or {}).get("name"))
        for i, tool in enumerate(body.get("tools") or [])
        if isinstance(tool, dict)
    ]
    for m, message in enumerate(body.get("messages") or []):
        for c, call in enumerate(
            (message.get("tool_calls") or []) if isinstance(message, dict) else []
        ):
            names.append(
                (
                    f"messages[{m}].tool_calls[{c}].function.name",
                    (call.get("function") or {}).get("name"),
                )
            )
    for param, name in names:
        if not isinstance(name, str):
            continue
        if len(name) > FUNCTION_NAME_MAX:
            return (
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{FUNCTION_NAME_MAX}, but got a string with length {len(name)} instead.",
                param,
                "string_above_max_length",
            )
        if not FUNCTION_NAME.match(name):
            return (
                f"Invalid '{param}': string does not match pattern. Expected a string that "
                f"matches the pattern '{FUNCTION_NAME.pattern}'.",
                param,
                "invalid_value",
            )
    return None


def _argument(name: str, schema: Any, said: str) -> Any:
    """The value the user gave as ``name=value`` (typed as the schema says), else a
    placeholder: a model takes arguments from the conversation."""
    found = re.search(rf"(?<![\w]){re.escape(name)}=(\S+)", said)
    if found is None:
        return f"value of {name}"
    value = found.group(1).rstrip(".,;:!?")  # "b=3." ends a sentence
    kind = schema.get("type") if isinstance(schema, dict) else None
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean":
        return value == "true"
    return value


def _tool_calls_for(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Call the request's tools (up to two; one if parallel_tool_calls is false), unless
    tool_choice is "none" or the last message already is a tool result. Arguments the
    last user message spells ``name=value`` are taken from it."""
    tools = body.get("tools") or []
    messages = body.get("messages") or []
    if not tools or body.get("tool_choice") == "none":
        return []
    if messages and messages[-1].get("role") == "tool":
        return []
    said = next(
        (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    limit = 1 if body.get("parallel_tool_calls") is False else 2
    calls = []
    for index, tool in enumerate(tools[:limit]):
        function = tool.get("function", {})
        properties = (function.get("parameters") or {}).get("properties") or {}
        arguments = json.dumps(
            {name: _argument(name, schema, said) for name, schema in properties.items()}
        )
        calls.append(
            {
                "id": f"call_fake_{index}",
                "type": "function",
                "function": {"name": function.get("name", "f"), "arguments": arguments},
            }
        )
    return calls


#: The completion tokens one tool call takes (its name and arguments).
TOOL_CALL_TOKENS = 5


def cut_tool_calls(
    calls: list[dict[str, Any]], body: dict[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """The calls as far as the request's token limit lets the model write them, and
    whether it cut them: below ``TOOL_CALL_TOKENS`` the first call's arguments stop
    half-way (not JSON), as a real model's do when generation hits ``max_tokens``."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if not calls or not isinstance(limit, int) or limit >= TOOL_CALL_TOKENS:
        return calls, False
    first = calls[0]
    arguments = first["function"]["arguments"]
    cut = {
        **first,
        "function": {**first["function"], "arguments": arguments[: len(arguments) // 2]},
    }
    return [cut], True


def chat_reply(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return f"The tool said: {_text_of(last.get('content'))}"
    return f"Hello! You said: {_text_of(last.get('content'))}"


def completion_text(body: dict[str, Any]) -> str:
    """Fill-in-the-middle made visible: the suffix is named in the text."""
    prompt = body.get("prompt")
    prompt_text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    text = " and so on"
    if body.get("suffix"):
        text += f" [until {body['suffix']}]"
    if body.get("echo"):
        text = prompt_text + text
    return text


def _embedding_inputs(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    return list(value) if isinstance(value, list) else [value]


def embedding_vector(item: Any, dimensions: int) -> list[float]:
    """Deterministic values that float32 represents exactly (multiples of 1/256)."""
    digest = hashlib.sha256(json.dumps(item).encode()).digest()
    while len(digest) < dimensions:
        digest += hashlib.sha256(digest).digest()
    return [(digest[i] - 128) / 256 for i in range(dimensions)]


def rerank_score(query: str, document: str) -> float:
    """The fake reranker's relevance: the share of the query's words in the document
    (case-insensitive), a multiple of 1/len(query words)."""
    wanted = query.lower().split()
    have = set(document.lower().split())
    return sum(w in have for w in wanted) / max(1, len(wanted))


def _rerank_texts(documents: Any) -> list[str] | None:
    if not isinstance(documents, list) or not documents:
        return None
    texts = []
    for d in documents:
        text = d.get("text") if isinstance(d, dict) else d
        if not isinstance(text, str):
            return None
        texts.append(text)
    return texts


# ------------------------------------------------------------------------- the app


class FakeOpenAI:
    def __init__(self, faults: dict[str, Fault] | None = None) -> None:
        self.faults: dict[str, Fault] = dict(faults or {})
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._counter = 0

    # -- what tests read ----------------------------------------------------------

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def received(self, path: str | None = None, model: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (path is None or r.path == path) and (model is None or r.model == model)
            ]

    def last(self, path: str | None = None) -> Recorded:
        found = self.received(path)
        assert found, f"the fake upstream received no request for {path or 'any path'}"
        return found[-1]

    # -- ASGI -----------------------------------------------------------------------

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
        record = Recorded(scope["method"], scope["path"], headers, body, time.monotonic())
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            record.model = body["model"]
        with self._lock:
            self.requests.append(record)
        gone = asyncio.Event()
        watcher = asyncio.create_task(self._watch(receive, record, gone))
        try:
            await self._handle(record, body, send, gone)
        finally:
            watcher.cancel()

    async def _watch(self, receive: Any, record: Recorded, gone: asyncio.Event) -> None:
        message = await receive()
        if message["type"] == "http.disconnect" and not record.completed:
            record.disconnected_at = time.monotonic()
            gone.set()

    async def _handle(self, record: Recorded, body: Any, send: Send, gone: asyncio.Event) -> None:
        if record.method == "GET" and record.path == "/v1/models":
            models = sorted({"fake-model", *self.faults})
            data = [
                {"id": m, "object": "model", "created": CREATED, "owned_by": "fake"} for m in models
            ]
            await self._json(record, send, 200, {"object": "list", "data": data})
            return
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/embeddings": self._embeddings,
            "/v1/responses": self._responses,
            "/v1/rerank": self._rerank,
        }
        handler = routes.get(record.path)
        if record.method != "POST" or handler is None:
            await self._error(
                record, send, 404, f"Unknown path {record.path}", "invalid_request_error"
            )
            return
        if not isinstance(body, dict):
            await self._error(
                record, send, 400, "We could not parse the JSON body.", "invalid_request_error"
            )
            return
        fault = self._fault_for(record.model)
        if fault is not None and fault.kind == "status":
            await self._error(
                record, send, fault.status, fault.message, fault.error_type,
                param=fault.param, code=fault.code, headers=fault.headers,
            )  # fmt: skip
            return
        if fault is not None and fault.kind == "delay" and await _pause(fault.seconds, gone):
            return
        await handler(record, body, send, gone, fault)

    def _fault_for(self, model: str | None) -> Fault | None:
        fault = self.faults.get(model or "")
        if fault is None:
            return None
        with self._lock:
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
        return fault

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}-fake{self._counter}"

    # -- endpoints --------------------------------------------------------------------

    async def _chat(
        self, record: Recorded, body: dict[str, Any], send: Send, gone: asyncio.Event, fault: Any
    ) -> None:
        model = body.get("model", "fake-model")
        invalid = function_name_error(body)
        if invalid is not None:
            message, param, code = invalid
            await self._error(
                record, send, 400, message, "invalid_request_error", param=param, code=code
            )
            return
        calls, cut = cut_tool_calls(_tool_calls_for(body), body)
        text = None if calls else chat_reply(body)
        prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in body.get("messages", []))
        completion_tokens = len(_content_deltas(text)) if text else TOOL_CALL_TOKENS * len(calls)
        if cut:
            completion_tokens = body.get("max_completion_tokens") or body["max_tokens"]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        finish = "length" if cut else "tool_calls" if calls else "stop"
        ident = self._next_id("chatcmpl")
        if not body.get("stream"):
            n = body.get("n") or 1
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if calls:
                message["tool_calls"] = calls
            choices = [
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                for i in range(n)
            ]
            response = {
                "id": ident,
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": choices,
                "usage": usage,
                "system_fingerprint": FINGERPRINT,
            }
            await self._json(record, send, 200, response)
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                out["usage"] = None
            return out

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if text is not None:
            events += [chunk({"content": piece}) for piece in _content_deltas(text)]
        for index, call in enumerate(calls):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            events.append(chunk({"tool_calls": [head]}))
            for piece in _pieces(call["function"]["arguments"], 6):
                events.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                )
        events.append(chunk({}, finish))
        if include_usage:
            events.append({**chunk({}), "choices": [], "usage": usage})
        await self._stream(record, send, gone, events, fault)

    async def _responses(
        self, record: Recorded, body: dict[str, Any], send: Send, gone: asyncio.Event, fault: Any
    ) -> None:
        """The Responses API (``tests.support.fake_openai_responses``), text answers only;
        a ``truncate`` fault cuts the stream after ``after`` events, ``hold`` holds it
        there until released (then cuts it)."""

        async def stop(position: int) -> bool:
            if fault is not None and position == fault.after:
                if fault.kind == "truncate":
                    return True
                if fault.kind == "hold":
                    await _held(fault.release, gone)
                    return True
            return gone.is_set()

        await send_responses(send, body, self._next_id("resp").replace("-", "_"), stop)
        record.completed = True

    async def _completions(
        self, record: Recorded, body: dict[str, Any], send: Send, gone: asyncio.Event, fault: Any
    ) -> None:
        model = body.get("model", "fake-model")
        text = completion_text(body)
        prompt = body.get("prompt")
        prompt_tokens = _words(prompt) if isinstance(prompt, str) else 1
        pieces = _content_deltas(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
        }
        ident = self._next_id("cmpl")

        def completion(text: str, finish: str | None) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "text_completion",
                "created": CREATED,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
            }

        if not body.get("stream"):
            await self._json(record, send, 200, {**completion(text, "stop"), "usage": usage})
            return
        events = [completion(piece, None) for piece in pieces]
        events.append(completion("", "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**completion("", None), "choices": [], "usage": usage})
        await self._stream(record, send, gone, events, fault)

    async def _embeddings(
        self, record: Recorded, body: dict[str, Any], send: Send, gone: asyncio.Event, fault: Any
    ) -> None:
        inputs = _embedding_inputs(body.get("input"))
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector = embedding_vector(item, dimensions)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(i) if isinstance(i, list) else _words(i) for i in inputs)
        await self._json(
            record,
            send,
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "fake-model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    async def _rerank(
        self, record: Recorded, body: dict[str, Any], send: Send, gone: asyncio.Event, fault: Any
    ) -> None:
        query, texts, top_n = (
            body.get("query"),
            _rerank_texts(body.get("documents")),
            body.get("top_n"),
        )
        if not isinstance(query, str) or texts is None:
            await self._error(
                record, send, 400, "query and documents are required", "invalid_request_error"
            )
            return
        if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
            await self._error(record, send, 400, "top_n must be positive", "invalid_request_error")
            return
        scores = [rerank_score(query, t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -scores[i])[: top_n or len(texts)]
        results = []
        for i in order:
            result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if body.get("return_documents", True):
                result["document"] = {"text": texts[i]}
            results.append(result)
        tokens = sum(_words(query) + _words(t) for t in texts)
        await self._json(
            record,
            send,
            200,
            {
                "model": body.get("model", "fake-model"),
                "usage": {"total_tokens": tokens},
                "results": results,
            },
        )

    # -- writing --------------------------------------------------------------------------

    async def _json(
        self,
        record: Recorded,
        send: Send,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        content = json.dumps(payload).encode()
        head = [(b"content-type", b"application/json")]
        head += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": head})
        record.completed = True
        await send({"type": "http.response.body", "body": content})

    async def _error(
        self,
        record: Recorded,
        send: Send,
        status: int,
        message: str,
        error_type: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        error = {"message": message, "type": error_type, "param": param, "code": code}
        await self._json(record, send, status, {"error": error}, headers)

    async def _stream(
        self,
        record: Recorded,
        send: Send,
        gone: asyncio.Event,
        events: list[dict[str, Any]],
        fault: Fault | None,
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        kind = fault.kind if fault is not None else None
        if kind == "drip":
            events = [events[0], *([events[1]] * 400), *events[2:]]
        for position, event in enumerate(events):
            if kind in ("stall", "malformed", "truncate") and position == fault.after:  # type: ignore[union-attr]
                await self._misbehave(record, send, gone, fault)  # type: ignore[arg-type]
                return
            held = kind == "hold" and position == fault.after  # type: ignore[union-attr]
            if held and await _held(fault.release, gone):  # type: ignore[union-attr]
                return
            if gone.is_set():
                return
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(event).encode() + b"\n\n",
                    "more_body": True,
                }
            )
            record.chunks_sent += 1
            if kind == "drip" and await _pause(fault.seconds, gone):  # type: ignore[union-attr]
                return
            await asyncio.sleep(0)
        record.completed = True
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _misbehave(
        self, record: Recorded, send: Send, gone: asyncio.Event, fault: Fault
    ) -> None:
        if fault.kind == "stall":
            if await _pause(fault.seconds, gone):
                return
        elif fault.kind == "malformed":
            # Let what was sent so far reach the client on its own, so the bad line
            # arrives after the stream has begun (the case under test).
            if await _pause(0.2, gone):
                return
            await send(
                {"type": "http.response.body", "body": b"data: {not json\n\n", "more_body": True}
            )
            if await _pause(0.2, gone):
                return
        record.completed = True
        await send({"type": "http.response.body", "body": b""})


async def _pause(seconds: float, gone: asyncio.Event) -> bool:
    """Sleep ``seconds`` or until the client leaves; True if it left."""
    try:
        await asyncio.wait_for(gone.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def _held(release: threading.Event, gone: asyncio.Event) -> bool:
    """Wait until ``release`` is set (by a test, from another thread) or the client
    leaves; True if it left."""
    while not release.is_set():
        if await _pause(0.01, gone):
            return True
    return False


@contextmanager
def running_fake(faults: dict[str, Fault] | None = None) -> Iterator[tuple[FakeOpenAI, str]]:
    """Serve a ``FakeOpenAI`` on a free port; yields it and its ``/v1`` base URL."""
    fake = FakeOpenAI(faults)
    server: RunningServer
    with serve_asgi(fake) as server:
        yield fake, f"{server.url}/v1"
