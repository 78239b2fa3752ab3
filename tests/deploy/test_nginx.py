"""The shipped deploy/nginx.conf, run by the real nginx (non-root) in front of two real
gateways, driven through the official ``openai`` package and httpx: request ids, the
port in media URLs, nginx's own 413 as an OpenAI error, unbuffered streams, and retries
that never resend a POST a replica already received."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.support.fake_comfyui import FakeComfyUI, comfy_model, serve_comfyui
from tests.support.fake_openai import FakeOpenAI, Fault, running_fake, wait_until
from tests.support.nginx import SHIPPED, RunningNginx, serve_nginx
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenancy import chat_model

KEY = "sk-behind-nginx"
USER = [{"role": "user", "content": "hi"}]
NGINX_LIMIT_MIB = 25
GATEWAY_LIMIT_MIB = 1


@dataclass
class Stack:
    nginx: RunningNginx
    replicas: list[RunningServer]
    fake: FakeOpenAI
    comfy: FakeComfyUI

    def client(self, **options: object) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.nginx.url}/v1", api_key=KEY, max_retries=0, timeout=30, **options
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # One data directory (media) and one state database (media metadata) for both
    # replicas, as a shared volume and a shared database would be.
    shared = tmp_path_factory.mktemp("shared")
    state = shared / "switchyard.sqlite3"
    with ExitStack() as stack:
        fake, fake_url = stack.enter_context(running_fake())
        comfy = stack.enter_context(serve_comfyui())
        replicas = []
        for _ in ("a", "b"):
            config = {
                "server": {
                    "api_keys": [KEY],
                    "data_dir": str(shared),
                    "trust_forwarded_headers": True,
                    "max_body_mb": GATEWAY_LIMIT_MIB,
                },
                "state": {"database": f"sqlite:///{state}"},
                "defaults": False,
                "models": [
                    chat_model("m", "upstream-m", fake_url),
                    chat_model("held", "held", fake_url, timeout_s=30),
                    comfy_model("sd", comfy.url, {"generate": "text-to-image.yaml"}),
                ],
            }
            replicas.append(stack.enter_context(serve_gateway(config)))
        nginx = stack.enter_context(serve_nginx([r.port for r in replicas]))
        yield Stack(nginx, replicas, fake, comfy)


def test_a_clients_request_id_is_kept(stack: Stack) -> None:
    with stack.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=USER, extra_headers={"X-Request-Id": "client-chosen-id-42"}
        )
    assert raw.headers["x-request-id"] == "client-chosen-id-42"
    assert raw.parse().choices[0].message.content == "Hello! You said: hi"
    response = httpx.get(f"{stack.nginx.url}/health", headers={"X-Request-Id": "probe-7"})
    assert response.headers["x-request-id"] == "probe-7"


def test_without_one_nginx_makes_the_request_id(stack: Stack) -> None:
    ids = set()
    for _ in range(4):
        response = httpx.get(f"{stack.nginx.url}/health", timeout=15)
        assert response.status_code == 200
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 4
    # nginx's $request_id (32 hex digits), not the gateway's own form: the gateway kept the
    # id nginx sent, so nginx's log and the gateway's name the same request.
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids


def test_media_urls_made_through_nginx_carry_its_port(stack: Stack) -> None:
    with stack.client() as client:
        result = client.images.generate(model="sd", prompt="a lighthouse", n=1, size="64x48")
    url = result.data[0].url
    assert url is not None
    # nginx forwards Host without the port (Host $host); X-Forwarded-Host keeps it.
    assert url.startswith(f"http://127.0.0.1:{stack.nginx.port}/v1/media/"), url
    for _ in range(2):  # either replica serves it: both share media and its metadata
        response = httpx.get(url, timeout=15)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"


def test_a_client_cannot_choose_the_prefix_of_its_media_urls(stack: Stack) -> None:
    """The replicas trust X-Forwarded-*; nginx drops a client's X-Forwarded-Prefix."""
    with stack.client(default_headers={"X-Forwarded-Prefix": "/phish"}) as client:
        result = client.images.generate(model="sd", prompt="a lighthouse", n=1, size="64x48")
    url = result.data[0].url
    assert url is not None and url.startswith(f"http://127.0.0.1:{stack.nginx.port}/v1/media/")


def test_nginx_answers_an_over_limit_body_with_an_openai_error(stack: Stack) -> None:
    stack.fake.clear()
    big = "x" * ((NGINX_LIMIT_MIB + 1) * 1024 * 1024)
    with stack.client() as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": big}])
    error = caught.value
    assert error.status_code == 413
    assert error.code == "payload_too_large" and error.type == "invalid_request_error"
    assert "the proxy accepts at most 25 MiB" in error.message
    assert error.response.headers["content-type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", error.response.headers["x-request-id"])
    assert stack.fake.received() == []  # refused by nginx: no replica saw it


def test_the_gateways_own_413_passes_through_untouched(stack: Stack) -> None:
    body = "x" * ((GATEWAY_LIMIT_MIB + 1) * 1024 * 1024)  # under nginx's limit, over the gateway's
    with stack.client() as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": body}])
    assert caught.value.status_code == 413
    assert caught.value.code == "payload_too_large"
    assert "the proxy accepts" not in caught.value.message


def test_streams_pass_through_unbuffered(stack: Stack) -> None:
    """The first chunks reach the client while the upstream still holds the rest back: a
    buffering proxy would deliver nothing until the upstream finished (and the read
    would time out instead)."""
    fault = Fault("hold", after=2)
    stack.fake.faults["held"] = fault
    try:
        with stack.client() as client:
            stream = client.chat.completions.create(model="held", messages=USER, stream=True)
            chunks = iter(stream)
            first, second = next(chunks), next(chunks)
            seen = stack.fake.last("/v1/chat/completions")
            assert not seen.completed  # the upstream has not produced the rest yet
            fault.release.set()
            rest = list(chunks)
    finally:
        del stack.fake.faults["held"]
    assert first.choices[0].delta.role == "assistant"
    assert second.choices[0].delta.content == "Hello!"
    text = "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert "You said: hi" in "Hello!" + text
    assert rest[-1].choices[0].finish_reason == "stop"
    assert wait_until(lambda: seen.completed)


class _AcceptThenClose:
    """A replica that reads a request and closes the connection without answering, and
    counts the POSTs it was sent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if conn.recv(65536).startswith(b"POST "):
                    self.requests += 1

    def close(self) -> None:
        self.sock.close()


def test_a_post_a_replica_received_is_never_resent(stack: Stack) -> None:
    """A replica that took the request and died answers 502 (an OpenAI error); nginx does
    not run the generation again on the other replica."""
    broken = _AcceptThenClose()
    stack.fake.clear()
    try:
        with serve_nginx([broken.port, stack.replicas[0].port]) as nginx:
            client = openai.OpenAI(base_url=f"{nginx.url}/v1", api_key=KEY, max_retries=0)
            statuses = []
            for _ in range(4):
                try:
                    client.chat.completions.create(model="m", messages=USER)
                    statuses.append(200)
                except openai.APIStatusError as exc:
                    assert exc.code == "upstream_unavailable", exc.message
                    statuses.append(exc.status_code)
    finally:
        broken.close()
    assert broken.requests >= 1
    assert statuses.count(502) == broken.requests  # none of those was retried elsewhere
    assert len(stack.fake.received("/v1/chat/completions")) == statuses.count(200)


def test_a_replica_that_cannot_be_reached_is_skipped(stack: Stack) -> None:
    """Connection refused: the request was never sent, so nginx tries the other one."""
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        closed_port = placeholder.getsockname()[1]
    with serve_nginx([closed_port, stack.replicas[1].port]) as nginx:
        with openai.OpenAI(base_url=f"{nginx.url}/v1", api_key=KEY, max_retries=0) as client:
            for _ in range(4):
                reply = client.chat.completions.create(model="m", messages=USER)
                assert reply.choices[0].message.content == "Hello! You said: hi"
        assert "connect() failed" in nginx.error_log()


def test_the_shipped_config_never_retries_non_idempotent_requests() -> None:
    text = SHIPPED.read_text()
    (retry,) = re.findall(r"^\s*proxy_next_upstream\s+([^;]+);", text, re.MULTILINE)
    assert "non_idempotent" not in retry.split()
    assert re.search(r"^\s*proxy_buffering\s+off;", text, re.MULTILINE)
    assert re.search(r"^\s*proxy_set_header\s+X-Forwarded-Host\s+\$http_host;", text, re.MULTILINE)
