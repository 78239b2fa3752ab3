"""Talking to an OpenAI-compatible upstream: error mapping and SSE re-framing.

Kept apart from the adapter class because every HTTP-speaking adapter (images and
audio pass-through too) maps upstream failures the same way.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Mapping

import msgspec

from adapters.base import CallStats
from proxy.errors import (
    RateLimited,
    SwitchyardError,
    UpstreamError,
    UpstreamRejected,
)
from proxy.schemas.chat import UsageProbe


class _UpstreamErrorBody(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class _UpstreamErrorEnvelope(msgspec.Struct):
    error: _UpstreamErrorBody | str | None = None
    message: str | None = None
    detail: str | None = None


_decode_error = msgspec.json.Decoder(_UpstreamErrorEnvelope).decode
_decode_usage = msgspec.json.Decoder(UsageProbe).decode


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (sent by OpenAI), or ``Retry-After`` in seconds or as an HTTP date."""
    if millis := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(status: int, content: bytes, headers: Mapping[str, str]) -> SwitchyardError:
    """Turn a non-2xx upstream answer into the matching typed error."""
    message = content.decode("utf-8", "replace").strip()[:2000] or f"HTTP {status}"
    etype = param = code = None
    try:
        parsed = _decode_error(content)
    except msgspec.MsgspecError:
        parsed = None
    if parsed is not None:
        if isinstance(parsed.error, _UpstreamErrorBody):
            message = parsed.error.message or message
            etype, param = parsed.error.type, parsed.error.param
            code = None if parsed.error.code is None else str(parsed.error.code)
        elif isinstance(parsed.error, str):
            message = parsed.error
        elif parsed.message or parsed.detail:
            message = parsed.message or parsed.detail or message
    if status == 429:
        return RateLimited(
            f"Upstream rate limit: {message}", retry_after_s=retry_after_seconds(headers)
        )
    if status >= 500:
        return UpstreamError(f"Upstream error {status}: {message}")
    return UpstreamRejected(status, message, type=etype, param=param, code=code)


def _too_deep() -> UpstreamError:
    """msgspec gives up on JSON nested about 1,000 deep: no client could use it either."""
    return UpstreamError("The upstream answered with JSON nested too deeply to read.")


def probe_usage(content: bytes, stats: CallStats) -> None:
    """Read ``usage`` from an encoded body or chunk without decoding anything else."""
    try:
        usage = _decode_usage(content).usage
    except msgspec.MsgspecError:
        return
    except RecursionError:
        raise _too_deep() from None
    if usage is not None:
        stats.add_usage(usage.prompt_tokens, usage.completion_tokens)


_DONE = b"[DONE]"


class _ChoicesProbe(msgspec.Struct):
    choices: list[msgspec.Raw] | None = None


_decode_choices = msgspec.json.Decoder(_ChoicesProbe).decode


def _check_data(payload: bytes, stats: CallStats, model: str, hide_usage: bool) -> bool:
    """Reject a ``data:`` payload that is not JSON, and note the usage it may carry;
    True when the event is the usage chunk that the gateway asked for and the client did
    not (``hide_usage``): it is then not forwarded.

    Decoding into ``UsageProbe`` parses the JSON (so malformed data is caught) but
    builds nothing except ``usage``; the bytes forwarded stay the upstream's own.
    """
    try:
        probe = _decode_usage(payload)
    except msgspec.MsgspecError:
        raise UpstreamError(
            f"The upstream for '{model}' sent malformed SSE data: {payload[:80]!r}"
        ) from None
    except RecursionError:
        raise _too_deep() from None
    if probe.usage is None:
        return False
    stats.add_usage(probe.usage.prompt_tokens, probe.usage.completion_tokens)
    return hide_usage and not _decode_choices(payload).choices


def _check_events(
    block: bytes, stats: CallStats, model: str, hide_usage: bool = False
) -> tuple[bytes, bool]:
    """Validate the complete SSE events in ``block``; return what to forward and whether
    done. Events to hide (see ``_check_data``) are cut out of what is forwarded."""
    position = 0
    hidden: list[tuple[int, int]] = []
    for event in block.split(b"\n\n"):
        start, position = position, position + len(event) + 2
        if event.startswith(b"data: ") and b"\n" not in event:
            # The common case: one event, one data line.
            payload = event[6:]
            if payload == _DONE:
                return _without(block[:start], hidden), True
            if _check_data(payload, stats, model, hide_usage):
                hidden.append((start, position))
            continue
        for line in event.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            if field in (b"event", b"id", b"retry"):
                continue
            if field != b"data":
                raise UpstreamError(f"The upstream for '{model}' sent malformed SSE: {line[:80]!r}")
            payload = value.strip()
            if payload == _DONE:
                return _without(block[:start], hidden), True
            if _check_data(payload, stats, model, hide_usage):
                hidden.append((start, position))
    return _without(block, hidden), False


def _without(block: bytes, hidden: list[tuple[int, int]]) -> bytes:
    if not hidden:
        return block
    kept, at = [], 0
    for start, end in hidden:
        kept.append(block[at:start])
        at = end
    kept.append(block[at:])
    return b"".join(kept)


async def sse_events(
    chunks: AsyncIterator[bytes], stats: CallStats, model: str, *, hide_usage: bool = False
) -> AsyncIterator[bytes]:
    """Re-frame an upstream byte stream into blocks of complete SSE events, as they arrive."""
    buffer = b""
    async for chunk in chunks:
        buffer = buffer + chunk if buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            continue
        block, buffer = buffer[: cut + 2], buffer[cut + 2 :]
        forward, done = _check_events(block, stats, model, hide_usage)
        if forward:
            yield forward
        if done:
            return
    if buffer.strip():
        forward, done = _check_events(buffer.rstrip(b"\n") + b"\n\n", stats, model, hide_usage)
        if forward:
            yield forward
        if done:
            return
    raise UpstreamError(f"The upstream for '{model}' ended the stream before [DONE].")


class _ResponsesUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class _ResponsesProbe(msgspec.Struct):
    """The usage of a Responses API body (``usage``) or stream event (``response.usage``)."""

    type: str | None = None
    usage: _ResponsesUsage | None = None
    response: _ResponsesProbe | None = None


_decode_responses_probe = msgspec.json.Decoder(_ResponsesProbe).decode
#: The events a Responses API stream ends with.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


def probe_responses_usage(content: bytes, stats: CallStats) -> str | None:
    """Note the usage a Responses API body or event carries; the event's ``type``.
    Raises ``UpstreamError`` on data that is not JSON."""
    try:
        probe = _decode_responses_probe(content)
    except msgspec.MsgspecError:
        raise UpstreamError(f"The upstream sent malformed JSON: {content[:80]!r}") from None
    except RecursionError:
        raise _too_deep() from None
    usage = probe.usage or (probe.response.usage if probe.response is not None else None)
    if usage is not None:
        stats.add_usage(usage.input_tokens, usage.output_tokens)
    return probe.type


def _responses_block(block: bytes, stats: CallStats) -> bool:
    """Check the complete events in ``block``; whether one of them ended the stream."""
    ended = False
    for event in block.split(b"\n\n"):
        for line in event.split(b"\n"):
            field, _, value = line.partition(b":")
            if field == b"data" and value.strip() and value.strip() != _DONE:
                ended = probe_responses_usage(value.strip(), stats) in _TERMINAL or ended
    return ended


async def responses_events(
    chunks: AsyncIterator[bytes], stats: CallStats, model: str
) -> AsyncIterator[bytes]:
    """Re-frame a Responses API event stream into blocks of complete events, unchanged,
    noting the usage of its terminal event. The stream has no ``[DONE]``: it must end
    with a terminal event (``response.completed`` ...), else it was cut."""
    buffer = b""
    ended = False
    async for chunk in chunks:
        buffer = (buffer + chunk if buffer else chunk).replace(b"\r\n", b"\n")
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            continue
        block, buffer = buffer[: cut + 2], buffer[cut + 2 :]
        ended = _responses_block(block, stats) or ended
        yield block
    if buffer.strip():
        block = buffer.rstrip(b"\n") + b"\n\n"
        ended = _responses_block(block, stats) or ended
        yield block
    if not ended:
        raise UpstreamError(f"The upstream for '{model}' ended the stream before it was complete.")
