"""Audio endpoints end to end, with the real engines: espeak-ng (+ ffmpeg) and Whisper.

One gateway serves the module (Whisper tiny.en is loaded once). Speech is synthesized
through ``client.audio.speech`` and transcribed back through
``client.audio.transcriptions``; tiny.en on espeak-ng's robotic voice is not perfect,
so a round trip asserts that most words come back, not an exact string.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import av
import httpx
import openai
import pytest

from tests.support.servers import RunningServer, serve_gateway

SENTENCE = "Please open the door and turn on the light."
OTHER_SENTENCE = "Good morning. The weather today is sunny and warm."

CONFIG = {
    "server": {"max_body_mb": 1, "public_health_details": True},
    "models": [
        {"name": "whisper-1", "adapter": "whisper"},
        {"name": "tts-1", "adapter": "tts"},
    ],
}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_gateway(CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60
    ) as c:
        yield c


@pytest.fixture(scope="module")
def spoken(client: openai.OpenAI) -> bytes:
    """SENTENCE as WAV, synthesized once for the transcription tests."""
    return client.audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="wav"
    ).read()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def assert_mostly_same_words(heard: str, said: str) -> None:
    expected = words(said)
    got = set(words(heard))
    found = [w for w in expected if w in got]
    assert len(found) >= 0.8 * len(expected), f"heard {heard!r} for {said!r}"


def decoded_seconds(data: bytes, fmt: str) -> float:
    """Decode every frame with PyAV (FFmpeg) and return the audio's duration."""
    options: dict[str, Any] = {}
    if fmt == "pcm":
        options = {"format": "s16le", "options": {"sample_rate": "24000", "ch_layout": "mono"}}
    samples = 0
    rate = 0
    with av.open(io.BytesIO(data), **options) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    assert rate > 0
    return samples / rate


MAGIC = {
    "mp3": lambda d: d[:3] == b"ID3" or (d[0] == 0xFF and d[1] & 0xE0 == 0xE0),
    "opus": lambda d: d[:4] == b"OggS" and b"OpusHead" in d[:100],
    "aac": lambda d: d[0] == 0xFF and d[1] & 0xF6 == 0xF0,
    "flac": lambda d: d[:4] == b"fLaC",
    "wav": lambda d: d[:4] == b"RIFF" and d[8:12] == b"WAVE",
    "pcm": lambda d: d[:4] != b"RIFF" and len(d) % 2 == 0,
}
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def test_speech_round_trips_through_whisper(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=OTHER_SENTENCE)
    data = audio.read()
    assert audio.response.headers["content-type"] == "audio/mpeg"

    heard = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.mp3", data, "audio/mpeg")
    )

    assert_mostly_same_words(heard.text, OTHER_SENTENCE)
    assert heard.usage is not None and heard.usage.seconds > 1


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_speech_in_each_format_has_its_container_and_decodes(
    client: openai.OpenAI, fmt: str
) -> None:
    audio = client.audio.speech.create(
        model="tts-1", voice="nova", input=SENTENCE, response_format=fmt
    )
    data = audio.read()

    assert audio.response.headers["content-type"] == MEDIA_TYPES[fmt]
    assert MAGIC[fmt](data), data[:16]
    assert 1.0 < decoded_seconds(data, fmt) < 6.0


def test_transcription_json(client: openai.OpenAI, spoken: bytes) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", spoken))
    assert_mostly_same_words(result.text, SENTENCE)


def test_transcription_text(client: openai.OpenAI, spoken: bytes) -> None:
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("s.wav", spoken), response_format="text"
    )
    assert isinstance(text, str) and text.endswith("\n")
    assert_mostly_same_words(text, SENTENCE)


def test_transcription_srt(client: openai.OpenAI, spoken: bytes) -> None:
    srt = client.audio.transcriptions.create(
        model="whisper-1", file=("s.wav", spoken), response_format="srt"
    )
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S", srt), srt
    assert_mostly_same_words(srt.split("\n", 2)[2], SENTENCE)


def test_transcription_vtt(client: openai.OpenAI, spoken: bytes) -> None:
    vtt = client.audio.transcriptions.create(
        model="whisper-1", file=("s.wav", spoken), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n\n")
    assert re.search(r"\n\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n", vtt), vtt


def test_transcription_verbose_json_with_word_timestamps(
    client: openai.OpenAI, spoken: bytes
) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("s.wav", spoken),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
        temperature=0.0,
        prompt="A request about a door.",
    )

    assert result.language == "english"
    assert 1.5 < result.duration < 5
    assert_mostly_same_words(result.text, SENTENCE)
    assert result.segments and result.segments[0].id == 0
    for segment in result.segments:
        assert 0 <= segment.start < segment.end <= result.duration + 0.5
        assert segment.tokens
    assert result.words is not None and len(result.words) >= 6
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert_mostly_same_words(" ".join(w.word for w in result.words), SENTENCE)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # SDK: translations deprecated
def test_translation_answers_in_english(client: openai.OpenAI, spoken: bytes) -> None:
    """tiny.en is English-only: the translation of English speech is its transcript."""
    result = client.audio.translations.create(
        model="whisper-1", file=("s.wav", spoken), response_format="verbose_json"
    )
    assert result.language == "english"
    assert_mostly_same_words(result.text, SENTENCE)


def test_speech_is_streamed_as_it_is_produced(server: RunningServer) -> None:
    text = " ".join([OTHER_SENTENCE] * 40)
    body = {"model": "tts-1", "voice": "echo", "input": text, "response_format": "mp3"}
    started = time.perf_counter()
    chunks = 0
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers
        assert r.headers["transfer-encoding"] == "chunked"
        for index, _ in enumerate(r.iter_raw()):
            if index == 0:
                first = time.perf_counter() - started
            chunks += 1
    total = time.perf_counter() - started
    assert chunks > 1
    assert first < total / 2


def test_speed_changes_duration(client: openai.OpenAI) -> None:
    def seconds(speed: float) -> float:
        data = client.audio.speech.create(
            model="tts-1", voice="alloy", input=SENTENCE, response_format="wav", speed=speed
        ).read()
        return decoded_seconds(data, "wav")

    normal, fast, slowest = seconds(1.0), seconds(2.0), seconds(0.25)
    assert fast < normal * 0.7
    assert slowest > normal * 2.5  # beyond espeak-ng's own range: ffmpeg's atempo


def test_every_openai_voice_and_an_espeak_voice_speak(client: openai.OpenAI) -> None:
    voices = ["alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage"]
    voices += ["shimmer", "verse", "marin", "cedar", "fr", "en-gb+f3"]
    for voice in voices:
        data = client.audio.speech.create(
            model="tts-1", voice=voice, input="Bonjour.", response_format="wav"
        ).read()
        assert decoded_seconds(data, "wav") > 0.2, voice


def _status_error(call: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        result = call()
        if hasattr(result, "read"):
            result.read()
    return caught.value


def test_empty_audio_is_a_400_naming_the_file(client: openai.OpenAI) -> None:
    error = _status_error(
        lambda: client.audio.transcriptions.create(model="whisper-1", file=("empty.mp3", b""))
    )
    assert error.status_code == 400
    assert "empty.mp3" in error.message and "empty" in error.message
    assert error.body["param"] == "file"  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("notes.mp3", b"this is not audio at all " * 40, "Could not decode"),
        ("cut.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "Could not decode"),
    ],
)
def test_corrupt_audio_is_a_400_naming_the_file(
    client: openai.OpenAI, name: str, content: bytes, problem: str
) -> None:
    error = _status_error(
        lambda: client.audio.transcriptions.create(model="whisper-1", file=(name, content))
    )
    assert error.status_code == 400
    assert name in error.message and problem in error.message


def test_oversized_upload_is_a_413(client: openai.OpenAI) -> None:
    big = b"\0" * (2 * 1024 * 1024)
    error = _status_error(
        lambda: client.audio.transcriptions.create(model="whisper-1", file=("big.wav", big))
    )
    assert error.status_code == 413
    assert error.code == "payload_too_large"


def test_unknown_voice_is_a_400_naming_it(client: openai.OpenAI) -> None:
    error = _status_error(
        lambda: client.audio.speech.create(model="tts-1", voice="no-such-voice", input="Hi")
    )
    assert error.status_code == 400
    assert "no-such-voice" in error.message and "alloy" in error.message
    assert error.body["param"] == "voice"  # type: ignore[index]


@pytest.mark.parametrize(
    ("model", "capability"), [("whisper-1", "speech"), ("tts-1", "transcription")]
)
def test_a_model_without_the_capability_is_a_400_saying_so(
    client: openai.OpenAI, spoken: bytes, model: str, capability: str
) -> None:
    if capability == "speech":
        error = _status_error(
            lambda: client.audio.speech.create(model=model, voice="alloy", input="Hi")
        )
    else:
        error = _status_error(
            lambda: client.audio.transcriptions.create(model=model, file=("s.wav", spoken))
        )
    assert error.status_code == 400
    assert error.code == "unsupported_capability"
    assert f"does not support {capability}" in error.message


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"input": "   "}, "input"),
        ({"speed": 5.0}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"stream_format": "sse"}, "stream_format"),
    ],
)
def test_bad_speech_requests_are_400s(
    server: RunningServer, options: dict[str, Any], param: str
) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **options}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_other_languages_are_refused_by_an_english_only_model(
    client: openai.OpenAI, spoken: bytes
) -> None:
    error = _status_error(
        lambda: client.audio.transcriptions.create(
            model="whisper-1", file=("s.wav", spoken), language="fr"
        )
    )
    assert error.status_code == 400
    assert "English-only" in error.message
    assert error.body["param"] == "language"  # type: ignore[index]


def test_a_json_body_for_transcription_is_a_400(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/audio/transcriptions", json={"model": "whisper-1"}, timeout=30
    )
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_a_missing_file_is_a_400(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"model": (None, "whisper-1"), "language": (None, "en")},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


def test_readiness_lists_the_audio_models(server: RunningServer) -> None:
    body = httpx.get(f"{server.url}/health/ready", timeout=10).json()
    assert body["models"]["whisper-1"]["ready"] is True
    assert body["models"]["tts-1"]["ready"] is True
