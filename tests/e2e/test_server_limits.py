"""Read deadlines, the connection limit and the end of the shutdown drain, on the server
as ``switchyard serve`` builds it (``proxy.server``), run in a thread.

A request whose head or body never finishes arriving is answered 408 (or closed) after
``server.request_read_timeout_s``; ``server.limit_concurrency`` refuses what is beyond it
with an OpenAI error; requests still running when ``server.drain_timeout_s`` runs out
are ended (a stream with an SSE error event, an unanswered request with a 503) and are
recorded as such. Signals themselves are tested on a real process
(``test_server_signals``).
"""

from __future__ import annotations

import json
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from proxy.context import RequestContextMiddleware
from proxy.server import GatewayServer
from proxy.settings import settings_from_mapping
from tests.e2e.conftest import CLIENT_KEY, model_entry, sdk
from tests.support.fake_openai import FakeOpenAI, Fault, wait_until
from tests.support.servers import STREAM_ENDED_BY_SHUTDOWN, RunningServer, serve_switchyard

ASK = [{"role": "user", "content": "hi"}]
AUTH = f"Authorization: Bearer {CLIENT_KEY}\r\n".encode()


def switchyard(fake_url: str, **server: Any) -> Any:
    config = {
        "server": {"api_keys": [CLIENT_KEY], "data_dir": tempfile.mkdtemp(), **server},
        "models": [
            model_entry("held", "upstream-held", fake_url, timeout_s=60),
            model_entry("slow", "upstream-slow", fake_url, timeout_s=60),
        ],
    }
    return serve_switchyard(settings_from_mapping(config, "<test>"))


@pytest.fixture(scope="module")
def strict(fake_url: str) -> Iterator[RunningServer]:
    """A gateway with a one-second read deadline."""
    with switchyard(fake_url, request_read_timeout_s=1) as server:
        yield server


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def split_response(raw: bytes) -> tuple[bytes, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


STALLED_BODIES = {
    "/v1/chat/completions": b"Content-Type: application/json\r\n",
    "/v1/embeddings": b"Content-Type: application/json\r\n",
    "/v1/audio/transcriptions": b"Content-Type: multipart/form-data; boundary=xyz\r\n",
}


@pytest.mark.parametrize("path", list(STALLED_BODIES))
def test_a_stalled_body_gets_408_and_the_connection_is_closed(
    strict: RunningServer, path: str
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\n".encode()
        + AUTH
        + STALLED_BODIES[path]
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", strict.port), timeout=20) as sock:
        sock.sendall(head + b'6\r\n{"mode\r\n')
        raw = read_until_closed(sock)
    status, headers, body = split_response(raw)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert headers["connection"] == "close"
    assert json.loads(body) == {
        "error": {
            "message": "The request body did not arrive within 1 s.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_timeout",
        }
    }


def test_half_a_request_head_gets_408_and_the_connection_is_closed(
    strict: RunningServer,
) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=20) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n" + AUTH)
        raw = read_until_closed(sock)
    status, headers, body = split_response(raw)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert headers["connection"] == "close"
    assert json.loads(body)["error"] == {
        "message": "The request head did not arrive within 1 s.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_timeout",
    }


def test_a_connection_that_sends_nothing_is_closed(strict: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=20) as sock:
        assert read_until_closed(sock) == b""


def test_a_connection_that_sends_only_blank_lines_is_closed(strict: RunningServer) -> None:
    """CRLFs begin no request but cancel uvicorn's idle timer; the head deadline holds."""
    with socket.create_connection(("127.0.0.1", strict.port), timeout=20) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK")
        sock.sendall(b"\r\n")
        assert read_until_closed(sock) == b""


def test_a_complete_request_is_unaffected_by_the_deadline(
    strict: RunningServer, fake: FakeOpenAI
) -> None:
    with sdk(strict) as client:
        answer = client.chat.completions.create(model="slow", messages=ASK)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Hello! You said: hi"


def test_the_connection_limit_is_enforced(fake: FakeOpenAI, fake_url: str) -> None:
    fault = fake.faults["upstream-held"] = Fault("hold", after=2)
    with (
        switchyard(fake_url, limit_concurrency=2) as server,
        sdk(server) as client,
        httpx.Client(base_url=server.url, timeout=10) as second,
        httpx.Client(base_url=server.url, timeout=10) as third,
    ):
        stream = client.chat.completions.create(model="held", messages=ASK, stream=True)  # type: ignore[arg-type]
        chunks = iter(stream)
        assert next(chunks).choices[0].delta.role == "assistant"
        # One connection busy with a stream; a second one is within the limit.
        assert second.get("/health").status_code == 200
        refused = third.get("/health")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {
            "error": {
                "message": "The server is at its connection limit; retry shortly.",
                "type": "server_error",
                "param": None,
                "code": "server_overloaded",
            }
        }
        fault.release.set()
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello! You said: hi"
        second.close()
        assert third.get("/health").status_code == 200


def test_requests_still_running_after_the_drain_are_ended_and_recorded(
    fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["upstream-held"] = Fault("hold", after=2)
    fake.faults["upstream-slow"] = Fault("delay", seconds=60)
    outcome: dict[str, Any] = {}
    with switchyard(fake_url, drain_timeout_s=0.5) as server, sdk(server) as client:
        stream = client.chat.completions.create(model="held", messages=ASK, stream=True)  # type: ignore[arg-type]
        chunks = iter(stream)
        assert next(chunks).choices[0].delta.role == "assistant"
        assert next(chunks).choices[0].delta.content == "Hello!"

        def ask_slow() -> None:
            try:
                with sdk(server) as other:
                    other.chat.completions.create(model="slow", messages=ASK)  # type: ignore[arg-type]
            except openai.APIStatusError as exc:
                outcome["status"], outcome["body"] = exc.status_code, exc.body

        waiting = threading.Thread(target=ask_slow)
        waiting.start()
        assert wait_until(lambda: len(fake.received(model="upstream-slow")) == 1)
        gateway = server.server
        assert isinstance(gateway, GatewayServer)
        gateway.handle_exit(signal.SIGTERM, None)
        with pytest.raises(openai.APIError) as cut:
            next(chunks)
        waiting.join(timeout=20)
    assert type(cut.value) is openai.APIError
    assert cut.value.body == STREAM_ENDED_BY_SHUTDOWN
    assert outcome == {
        "status": 503,
        "body": {
            "message": "The server shut down before the answer was ready.",
            "type": "server_error",
            "param": None,
            "code": "server_shutting_down",
        },
    }
    app = server.app
    assert isinstance(app, RequestContextMiddleware)
    metrics = app.metrics.render().decode()
    assert 'switchyard_requests_ended_by_shutdown_total{model="held",route="chat"} 1.0' in metrics
    assert 'switchyard_requests_ended_by_shutdown_total{model="slow",route="chat"} 1.0' in metrics
