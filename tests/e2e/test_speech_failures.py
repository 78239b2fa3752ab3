"""Speech that fails after its first bytes: the client must be able to tell.

The failing engine is a real process in the real pipeline: ``ffmpeg_command`` names a
script that writes the start of an MP3 and exits with an error, as an encoder that
crashes mid-stream does. The status line (200) is already out by then, so the only
honest end is a broken transfer: no final chunk, the connection closed.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import RunningServer, serve_gateway

PARTIAL = b"ID3-the-first-bytes-of-the-audio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("broken-tts")
    encoder = folder / "dying-ffmpeg"
    encoder.write_text(
        f"#!/bin/sh\nprintf '%s' '{PARTIAL.decode()}'\necho 'encoder crashed' >&2\nexit 3\n"
    )
    encoder.chmod(encoder.stat().st_mode | stat.S_IXUSR)
    config = {
        "server": {"data_dir": str(folder)},
        "models": [
            {"name": "tts-broken", "adapter": "tts", "ffmpeg_command": str(encoder)},
            {"name": "tts-1", "adapter": "tts"},
        ],
    }
    with serve_gateway(config) as running:
        yield running


def _speak(server: RunningServer, model: str) -> tuple[int, bytes, Exception | None]:
    body = {"model": model, "voice": "alloy", "input": "Hello there.", "response_format": "mp3"}
    received = b""
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60) as r:
        try:
            for chunk in r.iter_raw():
                received += chunk
        except httpx.HTTPError as exc:
            return r.status_code, received, exc
    return r.status_code, received, None


def test_a_failure_after_the_first_bytes_breaks_the_transfer(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status, received, error = _speak(server, "tts-broken")
    assert status == 200
    assert received == PARTIAL
    assert isinstance(error, httpx.RemoteProtocolError)
    assert "incomplete chunked read" in str(error)

    failures = [r for r in caplog.records if r.name == "switchyard.audio"]
    assert [r.levelno for r in failures] == [logging.ERROR]
    assert "encoder crashed" in failures[0].getMessage()
    access = [r for r in caplog.records if r.name == "switchyard.access"]
    assert len(access) == 1
    assert access[0].status == 502  # type: ignore[attr-defined]
    assert "encoder crashed" in access[0].error  # type: ignore[attr-defined]

    metrics = httpx.get(f"{server.url}/metrics").text
    assert (
        'switchyard_requests_total{model="tts-broken",route="audio.speech",status="502"} 1.0'
        in metrics
    )
    assert 'model="tts-broken",route="audio.speech",status="200"' not in metrics


def test_a_stream_that_succeeds_still_ends_cleanly(server: RunningServer) -> None:
    status, received, error = _speak(server, "tts-1")
    assert (status, error) == (200, None)
    assert len(received) > 1000
