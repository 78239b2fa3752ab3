"""The tts adapter's voices and configuration, without going through HTTP."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import CallStats, Resources
from adapters.tts import TTSAdapter
from adapters.tts.voices import OPENAI_VOICES, EspeakVoice, PiperVoice, read_catalog
from proxy.errors import InvalidRequest
from proxy.schemas.audio import SpeechRequest
from proxy.schemas.base import convert_request
from proxy.settings import ConfigError, settings_from_mapping

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


def settings_with(**entry: Any) -> Any:
    return settings_from_mapping({"models": [{"name": "speech", "adapter": "tts", **entry}]})


async def started(**entry: Any) -> AsyncIterator[TTSAdapter]:
    settings = settings_with(**entry)
    async with httpx.AsyncClient() as http:
        adapter = TTSAdapter(settings.models[0], Resources(settings=settings, http=http))
        await adapter.start()
        yield adapter


@pytest.fixture
async def adapter() -> AsyncIterator[TTSAdapter]:
    async for a in started(voices={"narrator": {"engine": "espeak", "voice": "en-gb"}}):
        yield a


@needs_espeak
async def test_catalog_knows_languages_names_and_variants() -> None:
    catalog = await read_catalog("espeak-ng")

    for name in ("en-us", "en-gb", "fr", "fr-fr", "en-us+f3", "de+m2"):
        assert catalog.knows(name), name
    assert not catalog.knows("klingon")
    assert not catalog.knows("en-us+nosuchvariant")


@needs_espeak
async def test_voice_names_resolve_in_order(adapter: TTSAdapter) -> None:
    assert adapter.resolve("narrator") == EspeakVoice(voice="en-gb")
    assert adapter.resolve("alloy") is OPENAI_VOICES["alloy"]
    assert adapter.resolve("de") == EspeakVoice(voice="de")
    assert adapter.readiness() == (True, "ok")


@needs_espeak
async def test_an_unknown_voice_is_a_400_listing_the_known_ones(adapter: TTSAdapter) -> None:
    with pytest.raises(InvalidRequest) as caught:
        adapter.resolve("HAL-9000")

    assert caught.value.param == "voice"
    assert "'HAL-9000'" in caught.value.message
    assert "narrator" in caught.value.message and "shimmer" in caught.value.message


async def test_espeak_names_can_be_turned_off() -> None:
    async for adapter in started(espeak_voices=False):
        with pytest.raises(InvalidRequest):
            adapter.resolve("fr")


async def test_every_openai_voice_is_a_distinct_espeak_voice() -> None:
    assert len(OPENAI_VOICES) == 13
    assert len({(v.voice, v.pitch) for v in OPENAI_VOICES.values()}) == 13


@needs_espeak
@pytest.mark.parametrize(
    ("fmt", "speed", "commands"),
    [("wav", 1.0, 1), ("wav", 0.25, 2), ("mp3", 1.0, 2), ("pcm", 1.0, 2)],
)
async def test_wav_streams_straight_from_espeak_when_it_can(
    adapter: TTSAdapter, fmt: str, speed: float, commands: int
) -> None:
    chain = adapter._espeak_chain(EspeakVoice(), "Hello.", speed, fmt)

    assert len(chain) == commands
    assert chain[0][:3] == ["espeak-ng", "-v", "en-us"]
    assert chain[0][-2:] == ["--stdout", "--stdin"]  # the text never becomes an argument


@needs_espeak
async def test_speed_maps_to_espeak_words_per_minute(adapter: TTSAdapter) -> None:
    fast = adapter._espeak_chain(EspeakVoice(), "Hello.", 2.0, "wav")
    assert fast[0][fast[0].index("-s") + 1] == "350"


@needs_espeak
async def test_speech_yields_wav_bytes(adapter: TTSAdapter) -> None:
    request = convert_request(
        {"model": "speech", "input": "-v --help", "voice": "alloy", "response_format": "wav"},
        SpeechRequest,
    )
    stats = CallStats()

    audio = b"".join([c async for c in adapter.speech(request, stats)])

    assert audio[:4] == b"RIFF" and len(audio) > 10_000
    assert stats.upstream_s > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": "x" * 5000}, "input"),
        ({"stream_format": "sse"}, "stream_format"),
    ],
)
async def test_requests_the_engine_cannot_serve_are_400s(
    adapter: TTSAdapter, body: dict[str, Any], param: str
) -> None:
    request = convert_request(
        {"model": "speech", "input": "Hi.", "voice": "alloy", **body}, SpeechRequest
    )

    with pytest.raises(InvalidRequest) as caught:
        await anext(adapter.speech(request, CallStats()))

    assert caught.value.param == param


def test_a_custom_voice_object_is_looked_up_by_its_id() -> None:
    request = convert_request(
        {"model": "m", "input": "Hi.", "voice": {"id": "narrator"}}, SpeechRequest
    )
    assert request.params.voice_name == "narrator"


def test_config_rejects_an_unknown_engine() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with(voices={"x": {"engine": "festival"}})
    assert "models[0].voices" in str(caught.value)


def test_config_rejects_a_missing_piper_voice_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(ConfigError) as caught:
        settings_with(voice={"engine": "piper", "model": str(missing)})
    message = str(caught.value)
    assert "piper" in message
    assert "nowhere.onnx" in message or "piper-tts" in message


def test_piper_voice_config_is_validated(tmp_path: Path) -> None:
    pytest.importorskip("piper")
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"onnx")
    (tmp_path / "voice.onnx.json").write_text('{"audio": {}}')

    with pytest.raises(ValueError, match="sample_rate"):
        PiperVoice(model=str(model))


@needs_espeak
async def test_a_configured_voice_espeak_lacks_makes_the_model_unready() -> None:
    async for adapter in started(voices={"x": {"engine": "espeak", "voice": "klingon"}}):
        ready, reason = adapter.readiness()
        assert not ready and "klingon" in reason
