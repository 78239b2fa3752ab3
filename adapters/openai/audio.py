"""Audio pass-through for the ``openai`` adapter: uploads and speech, streamed both ways.

Transcription and translation uploads are re-sent as multipart with only ``model``
replaced: every text field the client sent goes along, and the file is read from the
gateway's spooled copy in 1 MiB chunks while it is being sent, with a precomputed
``Content-Length`` (no chunked upload, which some upstreams refuse). The upstream's
answer is forwarded in its own format. Speech is forwarded chunk by chunk as the
upstream produces it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from adapters.base import CallStats, DeploymentConfig, RawJSON, Resources
from adapters.openai.forms import post_form
from adapters.openai.upstream import error_from_response
from adapters.transport import Timeouts
from proxy.errors import InvalidRequest
from proxy.media.uploads import FormEnvelope
from proxy.schemas.audio import RawBody, SpeechRequest
from proxy.schemas.base import Envelope

_READ_SIZE = 1024 * 1024
_encode = msgspec.json.Encoder().encode


class AudioPassthrough:
    """Mixin for ``OpenAIAdapter``: the audio endpoints of an OpenAI-compatible upstream."""

    config: DeploymentConfig
    resources: Resources
    _base: str
    _headers: dict[str, str]
    _timeouts: Timeouts

    async def _upload(self, path: str, form: FormEnvelope[Any], stats: CallStats) -> Any:
        file = form.upload("file")
        if file is None:
            raise InvalidRequest("The 'file' field is required (the audio file).", param="file")
        content, media_type = await post_form(
            self.resources.http,
            self._base + path,
            form,
            upstream_model=self.config.upstream_model,
            headers=self._headers,
            timeouts=self._timeouts,
            model=self.config.name,
            stats=stats,
        )
        if media_type.startswith("application/json"):
            return RawJSON(content)
        return RawBody(content, media_type)

    async def transcribe(self, request: FormEnvelope[Any], stats: CallStats) -> Any:
        return await self._upload("/audio/transcriptions", request, stats)

    async def translate(self, request: FormEnvelope[Any], stats: CallStats) -> Any:
        return await self._upload("/audio/translations", request, stats)

    async def speech(
        self, request: Envelope[SpeechRequest], stats: CallStats
    ) -> AsyncIterator[bytes]:
        content = _encode(request.upstream_body(self.config.upstream_model))
        started = time.perf_counter()
        reply = await self.resources.upstream.stream(
            self._base + "/audio/speech", content, self._headers, self._timeouts, self.config.name
        )
        complete = False
        try:
            if reply.status >= 400:
                raise error_from_response(reply.status, await reply.read(), reply.headers)
            first = True
            async for chunk in reply.chunks():
                if first:
                    stats.upstream_s += time.perf_counter() - started
                    first = False
                yield chunk
            complete = True
        finally:
            await reply.release(complete=complete)
