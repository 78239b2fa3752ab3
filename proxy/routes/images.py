"""``POST /v1/images/generations`` (JSON), ``/v1/images/edits`` and ``/variations`` (multipart).

Adapters that produce images locally return bytes (``GeneratedImages``); this module
turns them into OpenAI's answer: converted to ``output_format`` when asked, then stored
in the media store and given as absolute ``url`` (the default), or inlined as
``b64_json``. A pass-through adapter's answer (``RawJSON``) is forwarded untouched.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, Router, post

from adapters.base import Adapter, Capability, RawJSON
from extensions.activation import refuse_activation
from proxy.app_state import AppState
from proxy.context import request_info
from proxy.disconnect import stopped_on_disconnect
from proxy.errors import InvalidRequest
from proxy.gateway import json_response
from proxy.media import GeneratedImages, MediaBlob, MediaServices
from proxy.media.imaging import OUTPUT_TYPES, convert_image
from proxy.media.uploads import FormEnvelope, read_form
from proxy.media.urls import base_url, media_url
from proxy.openapi import form_body
from proxy.schemas.base import UNSET, Envelope, decode_request
from proxy.schemas.images import (
    ImageData,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageRequest,
    ImagesResponse,
    ImageVariationRequest,
)

_EXTENSION_FORMAT = {v: k for k, v in OUTPUT_TYPES.items()}


def media_services(state: AppState) -> MediaServices:
    media = state.media
    if media is None:
        raise RuntimeError("media services are created by the app lifespan")
    return media


def _convert_all(
    blobs: list[MediaBlob], output_format: str, compression: int | None
) -> list[MediaBlob]:
    wanted = OUTPUT_TYPES[output_format]
    return [
        blob
        if blob.content_type == wanted
        else MediaBlob(convert_image(blob.data, output_format, compression), wanted)
        for blob in blobs
    ]


async def render_images(
    result: GeneratedImages, params: ImageRequest, media: MediaServices, base: str, owner: str
) -> ImagesResponse:
    """OpenAI's images answer for locally produced images."""
    output_format = getattr(params, "output_format", None) or None
    blobs = result.images
    if output_format is not None:
        compression = getattr(params, "output_compression", None) or None
        blobs = await asyncio.to_thread(_convert_all, blobs, output_format, compression)
    data: list[ImageData] = []
    for blob in blobs:
        if params.wants_b64:
            data.append(ImageData(b64_json=base64.b64encode(blob.data).decode("ascii")))
        else:
            stored = await media.store.save(blob.data, blob.content_type, owner=owner)
            data.append(ImageData(url=media_url(base, stored.id)))
    formats = {_EXTENSION_FORMAT.get(b.content_type) for b in blobs}
    shown_format = formats.pop() if len(formats) == 1 else None
    quality = getattr(params, "quality", None)
    return ImagesResponse(
        created=int(time.time()),
        data=data,
        output_format=shown_format or UNSET,
        size=result.size or UNSET,
        quality=quality if isinstance(quality, str) else UNSET,
    )


async def serve_images(
    request: Request[Any, Any, Any],
    route: str,
    envelope: Envelope[Any],
    call: Callable[[Adapter], Awaitable[GeneratedImages | RawJSON]],
) -> Response[bytes]:
    state: AppState = request.app.state.switchyard
    info = request_info(request.scope)
    info.route = route
    model = envelope.model
    await state.tenancy.admit(info, model)
    state.router.deployments_of(model)
    info.model = model
    if state.settings.server.log_prompts and isinstance(envelope.body.get("prompt"), str):
        info.prompt = envelope.body["prompt"][:4000]
    result = await state.router.call(
        model,
        Capability.IMAGES,
        lambda adapter: stopped_on_disconnect(adapter, request.receive, call(adapter)),
        info.stats,
    )
    if isinstance(result, RawJSON):
        return json_response(result)
    base = base_url(request.scope, state.settings.server)
    rendered = await render_images(
        result, envelope.params, media_services(state), base, info.team_id
    )
    return json_response(rendered)


@post(
    "/images/generations",
    summary="Create images from a prompt",
    status_code=200,
    opt={"request_body": ImageGenerationRequest},
)
async def generations(request: Request[Any, Any, Any]) -> Response[bytes]:
    envelope = decode_request(await request.body(), ImageGenerationRequest)
    refuse_activation(request.url.path, envelope.model, request.headers, envelope.body)
    stats = request_info(request.scope).stats
    return await serve_images(
        request, "images", envelope, lambda adapter: adapter.generate_images(envelope, stats)
    )


def _require_image(form: FormEnvelope[Any]) -> None:
    if not form.uploads("image"):
        raise InvalidRequest("An image file is required: send it as 'image'.", param="image")


@post(
    "/images/edits",
    summary="Edit images (multipart: image, mask, prompt)",
    status_code=200,
    opt=form_body(ImageEditRequest, "image", "mask"),
)
async def edits(request: Request[Any, Any, Any]) -> Response[bytes]:
    form = await read_form(request, ImageEditRequest)
    _require_image(form)
    stats = request_info(request.scope).stats
    return await serve_images(
        request, "images", form, lambda adapter: adapter.edit_images(form, stats)
    )


@post(
    "/images/variations",
    summary="Create variations of an image (multipart)",
    status_code=200,
    opt=form_body(ImageVariationRequest, "image"),
)
async def variations(request: Request[Any, Any, Any]) -> Response[bytes]:
    form = await read_form(request, ImageVariationRequest)
    _require_image(form)
    stats = request_info(request.scope).stats
    return await serve_images(
        request, "images", form, lambda adapter: adapter.image_variations(form, stats)
    )


def images_router(guards: list[Any]) -> Router:
    return Router(
        path="/v1",
        route_handlers=[generations, edits, variations],
        guards=guards,
        tags=["Images"],
    )
