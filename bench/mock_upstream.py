"""A fast mock OpenAI upstream for benchmarks: raw asyncio Protocol on uvloop + httptools.

``POST /v1/chat/completions`` (and ``/v1/completions``) answers with a small fixed
completion that carries ``usage``; with ``"stream": true`` it answers with a real SSE
stream of exactly ``--chunks`` content chunks (default 20), a finish chunk with usage
and ``data: [DONE]``, each event its own HTTP chunk, all sent in one write.
``GET /v1/models`` lists one model; anything else is 404. HTTP/1.1 keep-alive.

Run it alone with ``python bench/mock_upstream.py --port 9000``; it prints
``READY <port>`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

import httptools
import msgspec

MODEL = "mock-model"


class _Body(msgspec.Struct):
    stream: bool = False


_decode_body = msgspec.json.Decoder(_Body).decode


def _completion_body() -> bytes:
    return msgspec.json.encode(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
        }
    )


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _stream_body(chunks: int) -> bytes:
    """The whole chunked-encoded SSE response body: one HTTP chunk per SSE event."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000}
    events = []
    for i in range(chunks):
        delta: dict[str, object] = {"content": f"tok{i} "}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        event = {**base, "model": MODEL, "choices": [choice]}
        if i == 0:
            delta["role"] = "assistant"
        events.append(event)
    events.append(
        {
            **base,
            "model": MODEL,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks},
        }
    )
    frames = [b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events]
    frames.append(b"data: [DONE]\n\n")
    return b"".join(_http_chunk(f) for f in frames) + b"0\r\n\r\n"


def _response(status: bytes, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: " + content_type + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class Responses:
    def __init__(self, chunks: int) -> None:
        self.completion = _response(b"200 OK", b"application/json", _completion_body())
        self.stream = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n" + _stream_body(chunks)
        )
        models = msgspec.json.encode(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "mock"}]}
        )
        self.models = _response(b"200 OK", b"application/json", models)
        error = b'{"error":{"message":"not found","type":"invalid_request_error"}}'
        self.not_found = _response(b"404 Not Found", b"application/json", error)
        self.bad_json = _response(
            b"400 Bad Request",
            b"application/json",
            b'{"error":{"message":"invalid JSON body","type":"invalid_request_error"}}',
        )


class MockProtocol(asyncio.Protocol):
    __slots__ = ("body", "parser", "responses", "transport", "url")

    def __init__(self, responses: Responses) -> None:
        self.responses = responses
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        r = self.responses
        if method == b"POST" and path in (b"/v1/chat/completions", b"/v1/completions"):
            try:
                stream = _decode_body(b"".join(self.body)).stream
            except msgspec.MsgspecError:
                transport.write(r.bad_json)
                return
            transport.write(r.stream if stream else r.completion)
        elif method == b"GET" and path == b"/v1/models":
            transport.write(r.models)
        else:
            transport.write(r.not_found)
        if not self.parser.should_keep_alive():
            transport.close()


async def serve(host: str, port: int, chunks: int) -> None:
    loop = asyncio.get_running_loop()
    responses = Responses(chunks)
    server = await loop.create_server(
        lambda: MockProtocol(responses), host, port, backlog=2048, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the gateway
        asyncio.run(serve(args.host, args.port, args.chunks))
    else:
        uvloop.run(serve(args.host, args.port, args.chunks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
