"""The process chain behind local speech: streaming, failures, cleanup, ffmpeg options."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.tts.pipeline import ENCODERS, ffmpeg_encoder, stream_chain
from proxy.errors import ServiceUnavailable, UpstreamError


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


async def test_a_chain_joins_processes_by_pipes_and_streams_the_last_output() -> None:
    upper = [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"]
    reverse = [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read()[::-1])"]

    out = await collect(stream_chain([upper, reverse], b"hello audio"))

    assert out == b"OIDUA OLLEH"


async def test_an_async_feed_is_written_as_it_comes() -> None:
    async def feed() -> AsyncIterator[bytes]:
        for piece in (b"one ", b"two ", b"three"):
            await asyncio.sleep(0)
            yield piece

    out = await collect(stream_chain([["cat"]], feed()))

    assert out == b"one two three"


async def test_a_failing_tool_is_an_upstream_error_with_its_stderr() -> None:
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('no such voice'); sys.exit(3)"]

    with pytest.raises(UpstreamError) as caught:
        await collect(stream_chain([failing], b"text"))

    assert "exited with 3" in caught.value.message
    assert "no such voice" in caught.value.message


async def test_a_missing_tool_is_a_503_naming_it() -> None:
    with pytest.raises(ServiceUnavailable) as caught:
        await collect(stream_chain([["cat"], ["no-such-encoder-xyz"]], b"text"))

    assert "no-such-encoder-xyz" in caught.value.message


async def test_stopping_early_kills_the_processes(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    endless = ["sh", "-c", f"echo $$ > {pid_file}; exec yes"]
    chunks = stream_chain([endless], b"")

    first = await anext(chunks)
    await chunks.aclose()

    assert first.startswith(b"y\n")
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_ffmpeg_encoder_outputs_24khz_mono_to_a_pipe() -> None:
    command = ffmpeg_encoder("ffmpeg", ["-f", "wav"], "opus", 1.0)

    assert command[0] == "ffmpeg"
    assert command[command.index("-i") + 1] == "pipe:0"
    assert command[-1] == "pipe:1"
    assert command[command.index("-ar") + 1] == "24000"
    assert command[command.index("-ac") + 1] == "1"
    assert "-filter:a" not in command
    assert set(ENCODERS) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}


@pytest.mark.parametrize(
    ("tempo", "expected"),
    [(1.5, "atempo=1.5000"), (0.3, "atempo=0.5,atempo=0.6000")],
)
def test_tempo_uses_chained_atempo_filters(tempo: float, expected: str) -> None:
    command = ffmpeg_encoder("ffmpeg", ["-f", "wav"], "mp3", tempo)

    assert command[command.index("-filter:a") + 1] == expected
