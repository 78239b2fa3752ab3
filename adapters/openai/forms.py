"""Multipart requests to an OpenAI-compatible upstream (image edits, variations, audio).

The client's form is sent on with its text fields as they came (``model`` replaced)
and its files in their order and under their field names (``image[]`` stays
``image[]``). The body is encoded here rather than by httpx so that it can carry an
exact ``Content-Length`` (some upstreams refuse chunked uploads) while the files,
spooled to disk by the form parser above 1 MiB, are read in 1 MiB pieces in a worker
thread: a large upload is never held whole in memory nor read on the event loop. Each
call builds a fresh body from the start of the files, so a retry on another
deployment sends everything again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from adapters.base import CallStats
from adapters.openai.upstream import error_from_response
from adapters.transport import Timeouts, mapped_transport_errors
from proxy.media.uploads import FormEnvelope, Upload
from proxy.telemetry import span, upstream_headers

_READ_SIZE = 1024 * 1024


def _quote(value: str) -> str:
    """A multipart header parameter value, escaped as browsers and httpx do."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def multipart_body(
    fields: dict[str, Any], files: list[Upload], boundary: str
) -> tuple[int, AsyncIterator[bytes]]:
    """The length and the streamed bytes of a multipart/form-data body."""
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
        + str(value).encode()
        + b"\r\n"
        for name, values in fields.items()
        for value in (values if isinstance(values, list) else [values])
    )
    file_heads = [
        (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{_quote(file.field)}"; filename="{_quote(file.filename)}"\r\n'
            f"Content-Type: {file.content_type or 'application/octet-stream'}\r\n\r\n"
        ).encode()
        for file in files
    ]
    tail = f"--{boundary}--\r\n".encode()

    async def stream() -> AsyncIterator[bytes]:
        yield head
        for file, file_head in zip(files, file_heads, strict=True):
            yield file_head
            await asyncio.to_thread(file.file.seek, 0)
            while chunk := await asyncio.to_thread(file.file.read, _READ_SIZE):
                yield chunk
            yield b"\r\n"
        yield tail

    length = len(head) + sum(len(h) + f.size + 2 for h, f in zip(file_heads, files, strict=True))
    return length + len(tail), stream()


async def post_form(
    http: httpx.AsyncClient,
    url: str,
    form: FormEnvelope[Any],
    *,
    upstream_model: str,
    headers: dict[str, str],
    timeouts: Timeouts,
    model: str,
    stats: CallStats,
) -> tuple[bytes, str]:
    """POST ``form`` as multipart to ``url``; the upstream's answer and its media type."""
    boundary = secrets.token_hex(16)
    length, body = multipart_body({**form.body, "model": upstream_model}, form.files, boundary)
    sent_headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    sent_headers["content-type"] = f"multipart/form-data; boundary={boundary}"
    sent_headers["content-length"] = str(length)
    started = time.perf_counter()
    try:
        with span("upstream", model=model) as traced, mapped_transport_errors(model):
            request = http.build_request(
                "POST",
                url,
                content=body,
                headers=upstream_headers(sent_headers),
                timeout=timeouts.for_httpx(),
            )
            response = await http.send(request)
            traced.set("http.response.status_code", response.status_code)
            content = await response.aread()
    finally:
        stats.upstream_s += time.perf_counter() - started
    if response.status_code >= 400:
        raise error_from_response(response.status_code, content, response.headers)
    return content, response.headers.get("content-type", "application/json")
