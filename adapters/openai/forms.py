"""Multipart requests to an OpenAI-compatible upstream (image edits and variations).

The client's form is sent on with its text fields as they came (``model`` replaced)
and its files in their order and under their field names (``image[]`` stays
``image[]``). Uploaded files over 1 MiB were spooled to disk by the form parser, and
httpx reads file objects in 64 KiB chunks while it sends, so a large upload is never
held whole in memory; httpx rewinds each file first, so a retry on another
deployment sends it again from the start.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from adapters.base import CallStats, RawJSON
from adapters.openai.upstream import error_from_response, mapped_transport_errors
from proxy.media.uploads import FormEnvelope


def form_fields(form: FormEnvelope[Any], upstream_model: str) -> dict[str, Any]:
    """The text fields to send: the client's, with the upstream's model id."""
    return {**form.body, "model": upstream_model}


async def post_form(
    http: httpx.AsyncClient,
    url: str,
    form: FormEnvelope[Any],
    *,
    upstream_model: str,
    headers: dict[str, str],
    timeouts: httpx.Timeout,
    model: str,
    stats: CallStats,
) -> RawJSON:
    """POST ``form`` as multipart to ``url``; the upstream's JSON answer, or its error."""
    files = [(u.field, (u.filename, u.file, u.content_type)) for u in form.files]
    sent_headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    request = http.build_request(
        "POST",
        url,
        data=form_fields(form, upstream_model),
        files=files,
        headers=sent_headers,
        timeout=timeouts,
    )
    started = time.perf_counter()
    try:
        with mapped_transport_errors(model):
            response = await http.send(request)
            content = await response.aread()
    finally:
        stats.upstream_s += time.perf_counter() - started
    if response.status_code >= 400:
        raise error_from_response(response.status_code, content, response.headers)
    return RawJSON(content)
