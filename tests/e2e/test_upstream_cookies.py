"""Upstream clients keep no cookies: an upstream's ``Set-Cookie`` never comes back.

One gateway client serves every caller, so a cookie stored from one caller's answer
would be replayed on the next caller's request. The upstream here sets a cookie on
every answer and records the ``Cookie`` header of every request it gets; both HTTP
transports are tried, on the JSON hot path (plain and streaming), on the form
pass-through (audio uploads go through the shared httpx client) and with ComfyUI
(uploads, prompts, history, downloads and its websocket). Upstreams are addressed as
``localhost``: cookie jars that refuse cookies from bare IP addresses (aiohttp's)
would store these.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.fake_comfyui import FakeComfyUI, comfy_model, png_bytes, serve_comfyui
from tests.support.servers import RunningServer, read_body, serve_asgi, serve_gateway

KEY = "sk-cookie-test"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # create_variation


class CookieSettingUpstream:
    """Answers chat completions and transcriptions, each with ``Set-Cookie``."""

    def __init__(self) -> None:
        self.cookies: list[tuple[str, str | None]] = []
        self.served = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        raw = await read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.cookies.append((scope["path"], headers.get("cookie")))
        self.served += 1
        cookie = f"upstream_session=caller{self.served}; Path=/; Max-Age=3600".encode()
        if scope["path"] == "/v1/chat/completions":
            body = json.loads(raw)
            await self._chat(send, cookie, stream=bool(body.get("stream")))
        else:
            await self._json(send, cookie, {"text": "heard you"})

    @staticmethod
    async def _json(send: Any, cookie: bytes, payload: dict[str, Any]) -> None:
        head = [(b"content-type", b"application/json"), (b"set-cookie", cookie)]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    async def _chat(self, send: Any, cookie: bytes, *, stream: bool) -> None:
        base = {"id": "chatcmpl-c", "created": int(time.time()), "model": "upstream-chat"}
        if not stream:
            message = {"role": "assistant", "content": "hello"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            payload = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            await self._json(send, cookie, payload)
            return
        head = [(b"content-type", b"text/event-stream"), (b"set-cookie", cookie)]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        for delta, finish in (({"role": "assistant", "content": "hello"}, None), ({}, "stop")):
            chunk = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            frame = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[CookieSettingUpstream, str]]:
    fake = CookieSettingUpstream()
    with serve_asgi(fake) as running:
        yield fake, f"http://localhost:{running.port}/v1"


@pytest.fixture(scope="module")
def comfy() -> Iterator[FakeComfyUI]:
    with serve_comfyui() as fake:
        yield fake


@pytest.fixture(scope="module", params=["aiohttp", "httpx"])
def gateway(
    request: pytest.FixtureRequest,
    upstream: tuple[CookieSettingUpstream, str],
    comfy: FakeComfyUI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    base = upstream[1]
    models = [
        {"name": name, "adapter": "openai", "model": f"upstream-{name}", "base_url": base}
        for name in ("chat", "whisper")
    ]
    workflows = {"generate": "text-to-image.yaml", "variation": "variation.yaml"}
    models.append(comfy_model("sd", f"http://localhost:{comfy.port}", workflows))
    config = {
        "server": {"api_keys": [KEY], "data_dir": str(tmp_path_factory.mktemp("data"))},
        "http": {"transport": request.param},
        "models": models,
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def client(
    gateway: RunningServer, upstream: tuple[CookieSettingUpstream, str]
) -> Iterator[openai.OpenAI]:
    upstream[0].cookies.clear()
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0) as sdk:
        yield sdk


def test_json_hot_path_sends_no_cookie_back(
    client: openai.OpenAI, upstream: tuple[CookieSettingUpstream, str]
) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    for _ in range(2):
        reply = client.chat.completions.create(model="chat", messages=messages)
        assert reply.choices[0].message.content == "hello"
    with client.chat.completions.create(model="chat", messages=messages, stream=True) as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "hello"
    reply = client.chat.completions.create(model="chat", messages=messages)
    assert upstream[0].cookies == [("/v1/chat/completions", None)] * 4


def test_form_pass_through_sends_no_cookie_back(
    client: openai.OpenAI, upstream: tuple[CookieSettingUpstream, str]
) -> None:
    for _ in range(3):
        heard = client.audio.transcriptions.create(
            model="whisper", file=("a.wav", b"RIFF0000WAVE", "audio/wav")
        )
        assert heard.text == "heard you"
    assert upstream[0].cookies == [("/v1/audio/transcriptions", None)] * 3


def test_comfyui_gets_no_cookie_back(client: openai.OpenAI, comfy: FakeComfyUI) -> None:
    comfy.reset()
    comfy.set_cookie = "comfy_session=caller1; Path=/; Max-Age=3600"
    for _ in range(2):
        client.images.generate(model="sd", prompt="x", size="16x16", response_format="b64_json")
        client.images.create_variation(
            model="sd", image=("a.png", png_bytes((16, 16), (1, 2, 3, 255)), "image/png")
        )
    paths = {path for path, _ in comfy.cookies}
    assert {"/ws", "/prompt", "/history/" + comfy.prompt_ids[-1], "/view", "/upload/image"} <= paths
    assert [cookie for _, cookie in comfy.cookies] == [None] * len(comfy.cookies)
    comfy.reset()
