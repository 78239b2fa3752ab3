"""The whisper adapter's checks that need no model: decoding, languages, loading failures."""

from __future__ import annotations

import io
import subprocess
from types import SimpleNamespace
from typing import Any

import av
import httpx
import numpy as np
import pytest

from adapters.base import CallStats, Capability, Resources
from adapters.whisper import WhisperAdapter, _decode
from adapters.whisper.languages import LANGUAGES, language_name
from proxy.errors import InvalidRequest, ServiceUnavailable
from proxy.media.uploads import FormEnvelope, Upload
from proxy.schemas.audio import TranscriptionRequest
from proxy.settings import ConfigError, settings_from_mapping


def envelope(filename: str, data: bytes, **fields: Any) -> FormEnvelope[TranscriptionRequest]:
    params = TranscriptionRequest(model="whisper-1", **fields)
    upload = Upload.from_bytes("file", filename, "application/octet-stream", data)
    return FormEnvelope(params, {"model": "whisper-1"}, [upload])


def wav_bytes(seconds: float, rate: int = 22050) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        samples = (np.sin(np.arange(int(seconds * rate)) / 10) * 8000).astype(np.int16)
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def ffmpeg(*args: str, data: bytes | None = None) -> bytes:
    """Run ffmpeg with ``args`` (its output options last), returning what it writes."""
    command = ["ffmpeg", "-loglevel", "error", *args, "pipe:1"]
    return subprocess.run(command, input=data, capture_output=True, check=True).stdout


def adapter_for(**entry: Any) -> WhisperAdapter:
    settings = settings_from_mapping(
        {"models": [{"name": "whisper-1", "adapter": "whisper", **entry}]}
    )
    return WhisperAdapter(
        settings.models[0], Resources(settings=settings, http=httpx.AsyncClient())
    )


def test_any_container_is_decoded_to_16khz_mono() -> None:
    audio = _decode(envelope("tone.wav", wav_bytes(1.0)), 16000)

    assert audio.dtype == np.float32
    assert abs(audio.size - 16000) < 100


def test_a_compressed_format_decodes_too() -> None:
    ogg = ffmpeg(
        "-f", "wav", "-i", "pipe:0", "-c:a", "libopus", "-f", "ogg", data=wav_bytes(0.5, 48000)
    )

    assert _decode(envelope("tone.ogg", ogg), 16000).size > 7000


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("empty.wav", b"", "is empty"),
        ("noise.mp3", b"\x13\x37" * 2000, "Could not decode"),
        ("silence.wav", "no samples", "contains no audio"),
    ],
)
def test_unusable_audio_is_a_400_naming_the_file(name: str, data: Any, expected: str) -> None:
    if data == "no samples":  # a valid WAV header and zero samples
        data = ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0", "-f", "wav")
    with pytest.raises(InvalidRequest) as caught:
        _decode(envelope(name, data), 16000)

    assert caught.value.param == "file"
    assert name in caught.value.message and expected in caught.value.message


def test_a_file_without_an_audio_stream_says_so() -> None:
    png = ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=8x8:d=1",
        "-frames:v",
        "1",
        "-c:v",
        "png",
        "-f",
        "image2pipe",
    )

    with pytest.raises(InvalidRequest, match="no audio stream"):
        _decode(envelope("picture.png", png), 16000)


@pytest.mark.parametrize(
    ("multilingual", "language", "error"),
    [
        (False, "en", None),
        (False, "EN", None),
        (False, "de", "English-only"),
        (True, "de", None),
        (True, "klingon", "Unsupported language"),
    ],
)
def test_language_checks(multilingual: bool, language: str, error: str | None) -> None:
    adapter = adapter_for()
    model: Any = SimpleNamespace(model=SimpleNamespace(is_multilingual=multilingual))

    if error is None:
        assert adapter._language(model, language) == language.lower()
    else:
        with pytest.raises(InvalidRequest, match=error):
            adapter._language(model, language)


def test_languages_are_whisper_s_own() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert set(LANGUAGES) == set(_LANGUAGE_CODES)
    assert language_name("en") == "english"


async def test_a_model_that_cannot_load_is_not_ready_and_answers_503(tmp_path: Any) -> None:
    adapter = adapter_for(model_path=str(tmp_path / "missing-model"))
    await adapter.start()

    ready, reason = adapter.readiness()
    assert not ready and "cannot load the Whisper model" in reason
    with pytest.raises(ServiceUnavailable, match="whisper-1"):
        await adapter.transcribe(envelope("a.wav", wav_bytes(0.5)), CallStats())


async def test_streaming_transcription_is_refused() -> None:
    adapter = adapter_for(preload=False)

    with pytest.raises(InvalidRequest) as caught:
        await adapter.transcribe(envelope("a.wav", b"x", stream=True), CallStats())
    assert caught.value.param == "stream"


def test_capabilities_and_config() -> None:
    assert WhisperAdapter.capabilities == {Capability.TRANSCRIPTION}
    with pytest.raises(ConfigError, match="beams"):
        settings_from_mapping({"models": [{"name": "w", "adapter": "whisper", "beams": 5}]})


def test_the_default_config_offers_openai_s_audio_model_names() -> None:
    from proxy.settings import DEFAULT_MODELS

    audio = [m for m in DEFAULT_MODELS if m["adapter"] in ("whisper", "tts")]
    settings = settings_from_mapping({"models": audio})

    assert {(m.name, m.adapter) for m in settings.models} == {
        ("whisper-1", "whisper"),
        ("tts-1", "tts"),
    }
