"""Transcript rendering (srt, vtt, text, json) and the multipart body sent upstream."""

from __future__ import annotations

import hashlib
import io

import msgspec
import pytest
from multipart import MultipartParser

from adapters.base import RawJSON
from adapters.openai.forms import multipart_body
from proxy.media.uploads import Upload
from proxy.routes.audio import render_srt, render_transcription, render_vtt
from proxy.schemas.audio import (
    DurationUsage,
    RawBody,
    TranscriptionSegment,
    VerboseTranscription,
)
from proxy.schemas.base import UNSET


def segment(index: int, start: float, end: float, text: str) -> TranscriptionSegment:
    return TranscriptionSegment(
        id=index,
        seek=0,
        start=start,
        end=end,
        text=text,
        tokens=[1, 2],
        temperature=0.0,
        avg_logprob=-0.2,
        compression_ratio=1.1,
        no_speech_prob=0.01,
    )


RESULT = VerboseTranscription(
    task="transcribe",
    language="english",
    duration=3725.5,
    text="Hello there. General Kenobi.",
    segments=[
        segment(0, 0.0, 1.25, " Hello there."),
        segment(1, 3723.5, 3725.04, " General Kenobi."),
    ],
    usage=DurationUsage(seconds=3725.5),
)


def test_srt_numbers_cues_from_one_with_comma_milliseconds() -> None:
    assert render_srt(RESULT) == (
        "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n"
        "2\n01:02:03,500 --> 01:02:05,040\nGeneral Kenobi.\n"
    )


def test_vtt_has_its_header_and_dot_milliseconds() -> None:
    assert render_vtt(RESULT) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.250\nHello there.\n\n"
        "01:02:03.500 --> 01:02:05.040\nGeneral Kenobi.\n"
    )


@pytest.mark.parametrize(
    ("fmt", "media_type", "body"),
    [
        ("text", "text/plain; charset=utf-8", b"Hello there. General Kenobi.\n"),
        ("json", "application/json", b'{"text":"Hello there. General Kenobi.",'),
        ("verbose_json", "application/json", b'{"task":"transcribe","language":"english",'),
        ("srt", "text/plain; charset=utf-8", b"1\n00:00:00,000"),
        ("vtt", "text/vtt; charset=utf-8", b"WEBVTT\n\n"),
    ],
)
def test_each_response_format(fmt: str, media_type: str, body: bytes) -> None:
    response = render_transcription(RESULT, fmt)

    assert response.media_type == media_type
    assert isinstance(response.content, bytes) and response.content.startswith(body)


def test_json_carries_only_text_and_usage() -> None:
    content = render_transcription(RESULT, "json").content
    assert msgspec.json.decode(content) == {
        "text": "Hello there. General Kenobi.",
        "usage": {"seconds": 3725.5, "type": "duration"},
    }
    verbose = msgspec.json.decode(render_transcription(RESULT, "verbose_json").content)
    assert "words" not in verbose and RESULT.words is UNSET


def test_upstream_answers_are_forwarded_unchanged() -> None:
    assert render_transcription(RawJSON(b'{"text":"x"}'), "json").content == b'{"text":"x"}'
    raw = render_transcription(RawBody(b"WEBVTT\n", "text/vtt"), "vtt")
    assert raw.content == b"WEBVTT\n" and raw.media_type == "text/vtt"


async def test_multipart_body_is_well_formed_and_its_length_exact() -> None:
    audio = bytes(range(256)) * 4096  # 1 MiB: more than one read
    upload = Upload.from_bytes("file", 'tricky "name".mp3', "audio/mpeg", audio)
    fields = {"model": "upstream", "timestamp_granularities[]": ["word", "segment"], "x": "é"}

    length, stream = multipart_body(fields, [upload], "BOUNDARY123")
    body = b"".join([chunk async for chunk in stream])

    assert len(body) == length
    parts = list(MultipartParser(io.BytesIO(body), "BOUNDARY123", charset="utf-8"))
    text = [(p.name, p.value) for p in parts if p.filename is None]
    assert text == [
        ("model", "upstream"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
        ("x", "é"),
    ]
    (file_part,) = [p for p in parts if p.filename]
    assert file_part.name == "file"
    assert file_part.content_type == "audio/mpeg"
    assert hashlib.sha256(file_part.raw).digest() == hashlib.sha256(audio).digest()
