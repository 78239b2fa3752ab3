"""Audio through the ``openai`` adapter to a remote OpenAI-compatible upstream.

The upstream is a small fake served for real: it records what reached it (headers,
fields, file bytes) and answers as the API does, including a speech stream sent in
timed pieces so that the test can see the gateway forward audio as it arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from litestar import Litestar, Request, Response, post
from litestar.datastructures import UploadFile
from litestar.response import Stream

from tests.support.servers import RunningServer, free_port, serve_asgi, serve_gateway

UPSTREAM_KEY = "sk-upstream-audio"
SPEECH_PIECES = [b"ID3\x04piece-one;", b"piece-two;", b"piece-three"]
PIECE_DELAY_S = 0.3


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    fields: list[tuple[str, str]] = field(default_factory=list)
    filename: str | None = None
    file_sha256: str | None = None
    file_size: int = 0
    json: dict[str, Any] | None = None


class FakeAudioUpstream:
    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def app(self) -> Litestar:
        fake = self

        def _error(status: int, message: str, param: str | None = None) -> Response[Any]:
            body = {"error": {"message": message, "type": "invalid_request_error"}}
            body["error"]["param"] = param  # type: ignore[assignment]
            return Response(content=body, status_code=status)

        async def upload(request: Request[Any, Any, Any]) -> Response[Any]:
            seen = Seen(request.url.path, dict(request.headers))
            form = await request.form()
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    seen.filename = value.filename
                    seen.file_size = len(data)
                    seen.file_sha256 = hashlib.sha256(data).hexdigest()
                else:
                    seen.fields.append((key, value))
            fake.seen.append(seen)
            fields = dict(seen.fields)
            if fields.get("model") == "upstream-picky":
                return _error(400, "Language 'xx' is not supported.", "language")
            if fields.get("model") == "upstream-broken":
                return _error(500, "The upstream fell over.")
            heard = f"heard {seen.filename} ({seen.file_size} bytes)"
            if fields.get("response_format") in ("text", "srt", "vtt"):
                return Response(content=heard + "\n", media_type="text/plain; charset=utf-8")
            return Response(content={"text": heard})

        @post("/v1/audio/transcriptions", status_code=200)
        async def transcriptions(request: Request[Any, Any, Any]) -> Response[Any]:
            return await upload(request)

        @post("/v1/audio/translations", status_code=200)
        async def translations(request: Request[Any, Any, Any]) -> Response[Any]:
            return await upload(request)

        @post("/v1/audio/speech", status_code=200)
        async def speech(request: Request[Any, Any, Any]) -> Response[Any]:
            body = await request.json()
            fake.seen.append(Seen(request.url.path, dict(request.headers), json=body))
            if body.get("model") == "upstream-picky":
                return _error(400, "Voice 'nobody' is not available.", "voice")

            async def pieces() -> AsyncIterator[bytes]:
                for index, piece in enumerate(SPEECH_PIECES):
                    if index:
                        await asyncio.sleep(PIECE_DELAY_S)
                    yield piece

            return Stream(pieces(), media_type="audio/mpeg")

        return Litestar(
            route_handlers=[transcriptions, translations, speech],
            request_max_body_size=64 * 1024 * 1024,
        )


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeAudioUpstream, str]]:
    fake = FakeAudioUpstream()
    with serve_asgi(fake.app()) as running:
        yield fake, f"{running.url}/v1"


def _entry(name: str, upstream_id: str, base_url: str) -> dict[str, Any]:
    return {
        "name": name,
        "adapter": "openai",
        "model": upstream_id,
        "base_url": base_url,
        "api_key": UPSTREAM_KEY,
        "timeout_s": 10,
    }


@pytest.fixture(scope="module")
def gateway(upstream: tuple[FakeAudioUpstream, str]) -> Iterator[RunningServer]:
    base = upstream[1]
    config = {
        "server": {"max_body_mb": 8},
        "models": [
            _entry("remote-whisper", "upstream-whisper", base),
            _entry("remote-picky", "upstream-picky", base),
            _entry("remote-broken", "upstream-broken", base),
            _entry("remote-gone", "upstream-gone", f"http://127.0.0.1:{free_port()}/v1"),
        ],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def fake(upstream: tuple[FakeAudioUpstream, str]) -> FakeAudioUpstream:
    upstream[0].seen.clear()
    return upstream[0]


@pytest.fixture
def client(gateway: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as c:
        yield c


def test_transcription_upload_is_forwarded_with_every_field(
    client: openai.OpenAI, fake: FakeAudioUpstream
) -> None:
    audio = bytes(range(256)) * 40
    result = client.audio.transcriptions.create(
        model="remote-whisper",
        file=("talk.mp3", audio, "audio/mpeg"),
        language="en",
        prompt="Names: Ada, Grace.",
        temperature=0.2,
        response_format="json",
        extra_body={"custom_option": "kept"},
    )

    assert result.text == f"heard talk.mp3 ({len(audio)} bytes)"
    (seen,) = fake.seen
    assert seen.path == "/v1/audio/transcriptions"
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert int(seen.headers["content-length"]) > len(audio)
    assert "transfer-encoding" not in seen.headers
    fields = dict(seen.fields)
    assert fields["model"] == "upstream-whisper"
    assert fields["language"] == "en" and fields["prompt"] == "Names: Ada, Grace."
    assert float(fields["temperature"]) == pytest.approx(0.2)
    assert fields["custom_option"] == "kept"
    assert seen.file_sha256 == hashlib.sha256(audio).hexdigest()


def test_array_fields_and_text_formats_pass_through(
    client: openai.OpenAI, fake: FakeAudioUpstream
) -> None:
    text = client.audio.transcriptions.create(
        model="remote-whisper",
        file=("a.wav", b"RIFF-ish"),
        response_format="text",
        timestamp_granularities=["word", "segment"],
    )

    assert text == "heard a.wav (8 bytes)\n"
    granularities = [v for k, v in fake.seen[0].fields if k == "timestamp_granularities[]"]
    assert granularities == ["word", "segment"]


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # SDK: translations deprecated
def test_a_large_upload_is_streamed_through_intact(
    client: openai.OpenAI, fake: FakeAudioUpstream
) -> None:
    audio = hashlib.sha256(b"seed").digest() * (5 * 1024 * 1024 // 32)  # 5 MiB, on disk
    result = client.audio.translations.create(model="remote-whisper", file=("long.ogg", audio))

    assert result.text == f"heard long.ogg ({len(audio)} bytes)"
    (seen,) = fake.seen
    assert seen.path == "/v1/audio/translations"
    assert seen.file_sha256 == hashlib.sha256(audio).hexdigest()


def test_upstream_rejections_keep_their_status_and_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="remote-picky", file=("a.wav", b"x"))
    assert "Language 'xx'" in caught.value.message
    assert caught.value.body["param"] == "language"  # type: ignore[index]


def test_upstream_failures_are_502s(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="remote-broken", file=("a.wav", b"x"))
    assert caught.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.speech.create(model="remote-gone", voice="alloy", input="Hi").read()
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unavailable"


def test_speech_is_forwarded_piece_by_piece(
    gateway: RunningServer, fake: FakeAudioUpstream
) -> None:
    body = {"model": "remote-whisper", "voice": "alloy", "input": "Hello.", "speed": 1.5}
    arrivals: list[float] = []
    received = b""
    started = time.perf_counter()
    with httpx.stream("POST", f"{gateway.url}/v1/audio/speech", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/mpeg"
        for chunk in r.iter_raw():
            arrivals.append(time.perf_counter() - started)
            received += chunk

    assert received == b"".join(SPEECH_PIECES)
    assert arrivals[0] < PIECE_DELAY_S  # the first piece came before the upstream finished
    assert arrivals[-1] >= PIECE_DELAY_S * (len(SPEECH_PIECES) - 1) * 0.9
    (seen,) = fake.seen
    assert seen.json == {**body, "model": "upstream-whisper"}


def test_speech_rejections_keep_their_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="remote-picky", voice="nobody", input="Hi").read()
    assert "Voice 'nobody'" in caught.value.message
