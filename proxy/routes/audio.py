"""The OpenAI audio endpoints: transcriptions, translations (multipart) and speech.

Uploads are parsed by Litestar's multipart parser, which spools files to disk above
1 MiB and enforces ``server.max_body_mb`` while reading (413). Local adapters answer a
``VerboseTranscription`` that is rendered here into the requested ``response_format``;
remote ones answer in that format already. Speech is streamed to the client chunk by
chunk as the adapter produces it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any, TypeVar

from litestar import Request, Response, Router, post
from litestar.response import Stream

from adapters.base import Adapter, Capability, RawJSON
from extensions.activation import refuse_activation
from proxy.app_state import AppState
from proxy.context import RequestInfo, request_info
from proxy.errors import InvalidRequest, StreamAborted, SwitchyardError, UpstreamError
from proxy.gateway import json_response
from proxy.media.uploads import FormEnvelope, read_form
from proxy.openapi import form_body
from proxy.schemas.audio import (
    SPEECH_MEDIA_TYPES,
    RawBody,
    SpeechRequest,
    Transcription,
    TranscriptionRequest,
    TranslationRequest,
    VerboseTranscription,
)
from proxy.schemas.base import WireRequest, decode_request

log = logging.getLogger("switchyard.audio")

T = TypeVar("T", bound=WireRequest)

#: Multipart fields that are arrays; the SDKs send them as ``name[]``, curl users may not.
_ARRAY_FIELDS = frozenset({"timestamp_granularities", "include"})


async def read_upload(request: Request[Any, Any, Any], request_type: type[T]) -> FormEnvelope[T]:
    """Parse a multipart audio request: the ``file`` upload and the text fields.

    Litestar closes the spooled files when the handler returns.
    """
    form = await read_form(request, request_type, array_fields=_ARRAY_FIELDS, expect="file")
    upload = form.upload("file")
    if upload is None:
        problem = "must be a file upload" if "file" in form.body else "is required"
        raise InvalidRequest(f"The 'file' field {problem} (the audio file).", param="file")
    form.files = [upload]
    return form


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def render_srt(result: VerboseTranscription) -> str:
    blocks = [
        f"{index}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for index, s in enumerate(result.segments, start=1)
    ]
    return "\n".join(blocks)


def render_vtt(result: VerboseTranscription) -> str:
    blocks = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n"
        for s in result.segments
    ]
    return "\n".join(["WEBVTT\n", *blocks])


_TEXT = "text/plain; charset=utf-8"


def render_transcription(result: Any, response_format: str) -> Response[Any]:
    """The adapter's answer in ``response_format`` (json, text, srt, verbose_json, vtt)."""
    if isinstance(result, RawJSON):
        return json_response(result)
    if isinstance(result, RawBody):
        return Response(content=result.content, media_type=result.media_type)
    assert isinstance(result, VerboseTranscription)
    if response_format == "verbose_json":
        return json_response(result)
    if response_format == "text":
        return Response(content=(result.text + "\n").encode(), media_type=_TEXT)
    if response_format == "srt":
        return Response(content=render_srt(result).encode(), media_type=_TEXT)
    if response_format == "vtt":
        return Response(content=render_vtt(result).encode(), media_type="text/vtt; charset=utf-8")
    return json_response(Transcription(text=result.text, usage=result.usage))


async def _serve_upload(
    request: Request[Any, Any, Any], route: str, request_type: type[T], method: str
) -> Response[Any]:
    state: AppState = request.app.state.switchyard
    info = request_info(request.scope)
    info.route = route
    upload = await read_upload(request, request_type)
    model = upload.model
    await state.tenancy.admit(info, model)
    state.router.deployments_of(model)
    info.model = model

    def invoke(adapter: Adapter) -> Awaitable[Any]:
        return getattr(adapter, method)(upload, info.stats)  # type: ignore[no-any-return]

    result = await state.router.call(model, Capability.TRANSCRIPTION, invoke, info.stats)
    return render_transcription(result, upload.params.response_format)  # type: ignore[attr-defined]


@post(
    "/audio/transcriptions",
    summary="Transcribe audio",
    status_code=200,
    opt=form_body(TranscriptionRequest, "file"),
)
async def transcriptions(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _serve_upload(request, "audio.transcriptions", TranscriptionRequest, "transcribe")


@post(
    "/audio/translations",
    summary="Translate audio into English",
    status_code=200,
    opt=form_body(TranslationRequest, "file"),
)
async def translations(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _serve_upload(request, "audio.translations", TranslationRequest, "translate")


async def _audio_bytes(chunks: AsyncIterator[bytes], info: RequestInfo) -> AsyncIterator[bytes]:
    """Forward audio chunks; a failure after the first byte cuts the response.

    Audio has no in-band error format, and ending the body normally would hand the
    client a truncated file as if it were whole: the response is left without its
    final chunk instead (``StreamAborted``), logged as an error and recorded as failed.
    """
    sent = 0
    try:
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                sent += len(chunk)
                yield chunk
    except SwitchyardError as exc:
        log.error("speech stream failed after %d bytes: %s", sent, exc.message)
        info.failure = exc
        raise StreamAborted(exc) from exc
    except Exception as exc:
        log.exception("speech stream failed after %d bytes", sent)
        info.failure = UpstreamError("The speech stream failed unexpectedly.")
        raise StreamAborted(info.failure) from exc


@post(
    "/audio/speech",
    summary="Generate audio from text",
    status_code=200,
    opt={"request_body": SpeechRequest},
)
async def speech(request: Request[Any, Any, Any]) -> Response[Any]:
    state: AppState = request.app.state.switchyard
    info = request_info(request.scope)
    info.route = "audio.speech"
    envelope = decode_request(await request.body(), SpeechRequest)
    refuse_activation(request.url.path, envelope.model, request.headers, envelope.body)
    model = envelope.model
    await state.tenancy.admit(info, model)
    state.router.deployments_of(model)
    info.model = model
    info.stream = True
    stats = info.stats

    def start(adapter: Adapter) -> AsyncIterator[bytes]:
        return adapter.speech(envelope, stats)

    chunks = await state.router.open_stream(model, Capability.SPEECH, start, stats)
    params = envelope.params
    sse = params.stream_format == "sse"
    media_type = "text/event-stream" if sse else SPEECH_MEDIA_TYPES[params.response_format]
    return Stream(_audio_bytes(chunks, info), media_type=media_type)


def audio_router(guards: list[Any]) -> Router:
    return Router(
        path="/v1",
        route_handlers=[transcriptions, translations, speech],
        guards=guards,
        tags=["Audio"],
    )
