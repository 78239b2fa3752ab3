"""Audio pass-through for the ``openai`` adapter: uploads and speech, streamed both ways.

Transcription and translation uploads are re-sent as multipart with only ``model``
replaced: every text field the client sent goes along, and the file is read from the
gateway's spooled copy in 1 MiB chunks while it is being sent, with a precomputed
``Content-Length`` (no chunked upload, which some upstreams refuse). The upstream's
answer is forwarded in its own format. Speech is forwarded chunk by chunk as the
upstream produces it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from adapters.base import CallStats, DeploymentConfig, RawJSON, Resources
from adapters.openai.upstream import error_from_response, mapped_transport_errors
from proxy.errors import InvalidRequest
from proxy.media.uploads import FormEnvelope, Upload
from proxy.schemas.audio import RawBody, SpeechRequest
from proxy.schemas.base import Envelope

_READ_SIZE = 1024 * 1024


def _quote(value: str) -> str:
    """A multipart header parameter value, escaped as browsers and httpx do."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def multipart_body(
    fields: dict[str, Any], file: Upload, boundary: str
) -> tuple[int, AsyncIterator[bytes]]:
    """The length and the streamed bytes of a multipart/form-data body."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
        + str(value).encode()
        + b"\r\n"
        for name, values in fields.items()
        for value in (values if isinstance(values, list) else [values])
    ]
    file_head = (
        f"--{boundary}\r\nContent-Disposition: form-data; "
        f'name="{_quote(file.field)}"; filename="{_quote(file.filename)}"\r\n'
        f"Content-Type: {file.content_type or 'application/octet-stream'}\r\n\r\n"
    ).encode()
    head = b"".join(parts) + file_head
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def stream() -> AsyncIterator[bytes]:
        yield head
        await asyncio.to_thread(file.file.seek, 0)
        while chunk := await asyncio.to_thread(file.file.read, _READ_SIZE):
            yield chunk
        yield tail

    return len(head) + file.size + len(tail), stream()


class AudioPassthrough:
    """Mixin for ``OpenAIAdapter``: the audio endpoints of an OpenAI-compatible upstream."""

    config: DeploymentConfig
    resources: Resources
    _base: str
    _headers: dict[str, str]
    _timeout: httpx.Timeout
    _request: Callable[[str, dict[str, Any]], httpx.Request]

    async def _upload(self, path: str, form: FormEnvelope[Any], stats: CallStats) -> Any:
        file = form.upload("file")
        if file is None:
            raise InvalidRequest("The 'file' field is required (the audio file).", param="file")
        boundary = secrets.token_hex(16)
        fields = {**form.body, "model": self.config.upstream_model}
        length, body = multipart_body(fields, file, boundary)
        headers = {
            **self._headers,
            "content-type": f"multipart/form-data; boundary={boundary}",
            "content-length": str(length),
        }
        request = self.resources.http.build_request(
            "POST", self._base + path, content=body, headers=headers, timeout=self._timeout
        )
        started = time.perf_counter()
        try:
            with mapped_transport_errors(self.config.name):
                response = await self.resources.http.send(request)
                content = await response.aread()
        finally:
            stats.upstream_s += time.perf_counter() - started
        if response.status_code >= 400:
            raise error_from_response(response.status_code, content, response.headers)
        media_type = response.headers.get("content-type", "application/json")
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
        upstream = self._request("/audio/speech", request.upstream_body(self.config.upstream_model))
        started = time.perf_counter()
        with mapped_transport_errors(self.config.name):
            response = await self.resources.http.send(upstream, stream=True)
        try:
            if response.status_code >= 400:
                with mapped_transport_errors(self.config.name):
                    content = await response.aread()
                raise error_from_response(response.status_code, content, response.headers)
            first = True
            with mapped_transport_errors(self.config.name):
                async for chunk in response.aiter_bytes():
                    if first:
                        stats.upstream_s += time.perf_counter() - started
                        first = False
                    yield chunk
        finally:
            await response.aclose()
