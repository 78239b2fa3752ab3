"""Streaming audio through a chain of processes: an engine, then ffmpeg when needed.

Processes are joined by OS pipes (``espeak-ng | ffmpeg``), so audio never passes
through Python between them; only the last process's stdout is read, in whatever
chunks the OS delivers, and yielded as soon as it arrives. The chain is killed when the
consumer stops early (client gone), and a non-zero exit becomes an ``UpstreamError``
carrying the tool's own stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from proxy.errors import ServiceUnavailable, UpstreamError
from proxy.schemas.audio import PCM_SAMPLE_RATE

log = logging.getLogger("switchyard.tts")

CHUNK_SIZE = 32 * 1024

#: ffmpeg output options per OpenAI ``response_format``. Headers that need a seekable
#: output (mp3's Xing frame, ID3) are left out: the output is a pipe.
_MP3 = ["-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "0", "-id3v2_version", "0"]
ENCODERS: dict[str, list[str]] = {
    "mp3": [*_MP3, "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
    "aac": ["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
    "flac": ["-c:a", "flac", "-f", "flac"],
    "wav": ["-c:a", "pcm_s16le", "-f", "wav"],
    "pcm": ["-c:a", "pcm_s16le", "-f", "s16le"],
}

#: ffmpeg's atempo filter accepts 0.5..100 per instance.
_ATEMPO_MIN = 0.5


def _atempo(tempo: float) -> str:
    filters = []
    while tempo < _ATEMPO_MIN:
        filters.append(f"atempo={_ATEMPO_MIN}")
        tempo /= _ATEMPO_MIN
    filters.append(f"atempo={tempo:.4f}")
    return ",".join(filters)


def ffmpeg_encoder(ffmpeg: str, input_options: list[str], fmt: str, tempo: float) -> list[str]:
    """Command line turning the engine's audio on stdin into ``fmt`` on stdout.

    Output is mono at 24 kHz, OpenAI's rate (raw ``pcm`` must be, since it carries no
    header; the others follow for consistency). ``tempo`` != 1 changes speed without
    changing pitch, for speeds an engine cannot reach by itself.
    """
    command = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error"]
    command += [*input_options, "-i", "pipe:0", "-map_metadata", "-1"]
    if abs(tempo - 1.0) > 0.005:
        command += ["-filter:a", _atempo(tempo)]
    command += ["-ac", "1", "-ar", str(PCM_SAMPLE_RATE), *ENCODERS[fmt]]
    command += ["-flush_packets", "1", "pipe:1"]
    return command


async def _feed(writer: asyncio.StreamWriter | None, feed: bytes | AsyncIterator[bytes]) -> None:
    if writer is None:
        return
    try:
        if isinstance(feed, bytes):
            writer.write(feed)
            await writer.drain()
        else:
            async with contextlib.aclosing(feed):  # type: ignore[type-var]
                async for chunk in feed:
                    writer.write(chunk)
                    await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the process exited early; its exit status and stderr say why
    finally:
        writer.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await writer.wait_closed()


async def _spawn(argv: list[str], stdin: Any, stdout: Any) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=stdin, stdout=stdout, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError:
        raise ServiceUnavailable(
            f"'{argv[0]}' is not installed on the server; text-to-speech needs it."
        ) from None


def _stderr_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text[-500:] or "no message"


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` if it still runs and wait for it.

    ``Process.wait()`` returns only once the process's pipes are closed as well. A
    consumer that stopped early leaves stdout's pipe paused with a full buffer, so its
    end would never be seen and ``wait()`` would hang: stdout is read to its end too.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    drain = [process.stdout.read()] if process.stdout is not None else []
    await asyncio.gather(process.wait(), *drain, return_exceptions=True)


async def stream_chain(
    commands: list[list[str]], feed: bytes | AsyncIterator[bytes]
) -> AsyncGenerator[bytes, None]:
    """Run ``commands`` as a pipeline fed with ``feed`` and yield the last one's stdout."""
    processes: list[asyncio.subprocess.Process] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        stdin: int | None = None  # the read end of the previous process's stdout pipe
        for index, argv in enumerate(commands):
            last = index == len(commands) - 1
            read_end, write_end = (None, None) if last else os.pipe()
            try:
                processes.append(
                    await _spawn(
                        argv,
                        asyncio.subprocess.PIPE if stdin is None else stdin,
                        asyncio.subprocess.PIPE if write_end is None else write_end,
                    )
                )
            except BaseException:
                if read_end is not None:
                    os.close(read_end)
                raise
            finally:
                for fd in (write_end, stdin):
                    if fd is not None:
                        os.close(fd)
            stdin = read_end
        tasks.append(asyncio.create_task(_feed(processes[0].stdin, feed)))
        errors = [asyncio.create_task(p.stderr.read()) for p in processes if p.stderr]
        tasks.extend(errors)
        output = processes[-1].stdout
        assert output is not None
        while chunk := await output.read(CHUNK_SIZE):
            yield chunk
        codes = [await p.wait() for p in processes]
        if any(codes):
            stderr = [await e for e in errors]
            failed = [
                f"{argv[0]} exited with {code}: {_stderr_text(err)}"
                for argv, code, err in zip(commands, codes, stderr, strict=True)
                if code
            ]
            raise UpstreamError("Speech synthesis failed: " + "; ".join(failed))
    finally:
        for process in processes:
            await _reap(process)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
