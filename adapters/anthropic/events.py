"""Server-sent events off an upstream byte stream, parsed as the SSE standard reads them.

The Messages API streams named events (``event: content_block_delta`` then ``data:``
with the JSON). The ``openai`` adapter's re-framer (``adapters.openai.upstream``) is
written for OpenAI's streams (``data:``-only events, a ``[DONE]`` ending, OpenAI usage);
``httpx-sse`` is no dependency (and reads httpx responses, while the hot path may run on
aiohttp); the ``anthropic`` SDK's decoder is private API of a test-only dependency; so
this module is the small parser both uses here need: it yields,
for every batch of complete events that arrived, each event's bytes (to forward
unchanged) with its name and data (to read).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseEvent:
    name: str | None
    """The ``event:`` field (None: the default ``message`` event)."""
    data: bytes
    """The ``data:`` lines' values, joined by newlines."""
    raw: bytes
    """The event as it arrived (line endings normalised), ending with its blank line."""


def parse_event(raw: bytes) -> SseEvent | None:
    """One event's lines (without the blank line that ends it); None for an event with
    neither a name nor data (comments, ``id:`` or ``retry:`` alone)."""
    name: str | None = None
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if field == b"event":
            name = value.decode("utf-8", "replace")
        elif field == b"data":
            data.append(value)
    if name is None and not data:
        return None
    return SseEvent(name, b"\n".join(data), raw + b"\n\n")


def _normalised(buffer: bytes) -> bytes:
    if b"\r" not in buffer:
        return buffer
    return buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[SseEvent]]:
    """The complete events of ``chunks``, a batch per read that completed some.

    A last event not followed by its blank line is still read when the body ends (as
    lenient as the ``openai`` adapter's re-framer); a ``\\r\\n`` pair split across two
    reads is read as one line break because a trailing ``\\r`` waits for the next read.
    """
    buffer = b""
    async for chunk in chunks:
        buffer = buffer + chunk if buffer else chunk
        held = b""
        if buffer.endswith(b"\r"):
            buffer, held = buffer[:-1], b"\r"
        buffer = _normalised(buffer)
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            buffer += held
            continue
        block, buffer = buffer[:cut], buffer[cut + 2 :] + held
        batch = [e for part in block.split(b"\n\n") if (e := parse_event(part.strip(b"\n")))]
        if batch:
            yield batch
    rest = _normalised(buffer).strip(b"\n")
    if rest:
        batch = [e for part in rest.split(b"\n\n") if (e := parse_event(part.strip(b"\n")))]
        if batch:
            yield batch
