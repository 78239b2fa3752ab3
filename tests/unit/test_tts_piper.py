"""Piper voices through the tts adapter, with piper-tts itself and a synthetic voice.

No real piper voice can be downloaded here, so ``tests/support/piper_test_voice`` holds
a tiny ONNX model with a real voice's interface (see ``make_voice.py``): piper
phonemizes, runs it with onnxruntime and hands back PCM, which the adapter encodes
with ffmpeg. What is tested is the plumbing; the audio is tones, not words.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from adapters.base import CallStats, Resources
from adapters.tts import TTSAdapter
from adapters.tts.voices import PiperVoice
from proxy.schemas.audio import SpeechRequest
from proxy.schemas.base import convert_request
from proxy.settings import settings_from_mapping

pytest.importorskip("piper", reason="piper-tts is not installed")

VOICE = Path(__file__).parents[1] / "support" / "piper_test_voice" / "test-voice.onnx"
SAMPLES_PER_PHONEME = 256


@pytest.fixture
async def adapter() -> AsyncIterator[TTSAdapter]:
    entry = {
        "name": "speech",
        "adapter": "tts",
        "voices": {"robot": {"engine": "piper", "model": str(VOICE)}},
    }
    settings = settings_from_mapping({"models": [entry]})
    async with httpx.AsyncClient() as http:
        tts = TTSAdapter(settings.models[0], Resources(settings=settings, http=http))
        await tts.start()
        yield tts


async def speak(adapter: TTSAdapter, text: str, fmt: str, **extra: Any) -> bytes:
    body = {"model": "speech", "input": text, "voice": "robot", "response_format": fmt, **extra}
    request = convert_request(body, SpeechRequest)
    return b"".join([chunk async for chunk in adapter.speech(request, CallStats())])


def seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames) / frames[0].sample_rate


async def test_the_voice_loads_at_start(adapter: TTSAdapter) -> None:
    voice = adapter.resolve("robot")

    assert isinstance(voice, PiperVoice)
    assert adapter.readiness() == (True, "ok")
    assert adapter._piper.sample_rate(voice) == 16000


@pytest.mark.parametrize(("fmt", "magic"), [("wav", b"RIFF"), ("flac", b"fLaC"), ("opus", b"OggS")])
async def test_piper_audio_is_encoded_in_the_requested_format(
    adapter: TTSAdapter, fmt: str, magic: bytes
) -> None:
    data = await speak(adapter, "Hello world. This is a test.", fmt)

    assert data.startswith(magic)
    assert seconds(data) > 0.5


async def test_longer_text_gives_longer_audio(adapter: TTSAdapter) -> None:
    short = seconds(await speak(adapter, "Hi.", "wav"))
    long = seconds(await speak(adapter, "Hi. " * 3 + "How are you doing today?", "wav"))

    assert long > short * 3


async def test_raw_pcm_is_resampled_to_24khz(adapter: TTSAdapter) -> None:
    text = "Hello world."
    data = await speak(adapter, text, "pcm")
    wav = await speak(adapter, text, "wav")

    assert len(data) % 2 == 0
    assert abs(len(data) / 2 / 24000 - seconds(wav)) < 0.05


def test_one_voice_for_every_openai_name() -> None:
    entry = {
        "name": "speech",
        "adapter": "tts",
        "voice": {"engine": "piper", "model": str(VOICE)},
    }
    settings = settings_from_mapping({"models": [entry]})
    tts = TTSAdapter(settings.models[0], Resources(settings=settings, http=httpx.AsyncClient()))

    assert isinstance(tts.resolve("alloy"), PiperVoice)
    assert isinstance(tts.resolve("shimmer"), PiperVoice)
