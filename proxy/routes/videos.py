"""``/v1/videos``: create a video job, poll it, download its content, list and delete.

``POST`` answers once the engine has accepted the job (so a bad request, a rejected
workflow or an unreachable engine is an HTTP error, not a failed job) with the job in
``queued`` or ``in_progress``; the client polls ``GET /v1/videos/{id}`` (the SDK's
``videos.poll`` / ``create_and_poll``) and then fetches ``/content``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from litestar import Request, Response, Router, delete, get, post
from litestar.enums import RequestEncodingType
from litestar.response import Stream

from adapters.base import Adapter, Capability
from proxy.app_state import AppState
from proxy.context import request_info
from proxy.errors import InvalidRequest, NotFound, UnsupportedCapability, shown
from proxy.gateway import json_response
from proxy.media.jobs import JobReporter
from proxy.media.uploads import FormEnvelope, Upload, decode_data_url, read_form
from proxy.routes.images import media_services
from proxy.routes.media import stream_media
from proxy.schemas.base import UNSET, decode_request
from proxy.schemas.images import parse_size
from proxy.schemas.videos import InputReference, VideoCreateRequest, VideoDeleted, VideoList
from proxy.state.records import VideoJobRecord

#: Poll interval suggested to the SDK's ``videos.poll`` (header ``openai-poll-after-ms``).
POLL_AFTER_MS = "1000"


async def _envelope(
    request: Request[Any, Any, Any], max_bytes: int
) -> FormEnvelope[VideoCreateRequest]:
    """The SDK sends multipart; a JSON body with a data-URL ``input_reference`` works too."""
    if request.content_type[0] == RequestEncodingType.MULTI_PART:
        form = await read_form(request, VideoCreateRequest)
        url = form.body.get("input_reference[image_url]")
        if isinstance(url, str):
            form.files.append(decode_data_url(url, "input_reference", max_bytes=max_bytes))
        reference = form.params.input_reference
    else:
        decoded = decode_request(await request.body(), VideoCreateRequest)
        form = FormEnvelope(decoded.params, decoded.body, [])
        reference = decoded.params.input_reference
        if isinstance(reference, InputReference) and isinstance(reference.image_url, str):
            form.files.append(
                decode_data_url(reference.image_url, "input_reference", max_bytes=max_bytes)
            )
    if "input_reference[file_id]" in form.body or (
        isinstance(reference, InputReference) and reference.file_id is not UNSET
    ):
        raise InvalidRequest(
            "input_reference.file_id is not supported: upload the image, or send a data URL.",
            param="input_reference",
        )
    return form


@post(
    "/videos",
    summary="Create a video job",
    status_code=200,
    opt={"request_body": VideoCreateRequest},
)
async def create_video(request: Request[Any, Any, Any]) -> Response[bytes]:
    state: AppState = request.app.state.switchyard
    media = media_services(state)
    info = request_info(request.scope)
    info.route = "videos"
    max_bytes = int(state.settings.server.max_body_mb * 1024 * 1024)
    form = await _envelope(request, max_bytes)
    params = form.params
    model = params.model
    await state.tenancy.admit(info, model)
    deployments = state.router.deployments_of(model)
    info.model = model
    if not any(Capability.VIDEO in d.adapter.capabilities for d in deployments):
        adapter = deployments[0].adapter
        raise UnsupportedCapability(
            f"Model '{model}' ({adapter.name} adapter) does not support {Capability.VIDEO}.",
            param="model",
        )
    seconds = params.duration()
    size = parse_size(params.size)
    # The files are closed when this handler returns; the job keeps their bytes.
    for index, upload in enumerate(form.files):
        data = await asyncio.to_thread(upload.read)
        form.files[index] = Upload.from_bytes(
            upload.field, upload.filename, upload.content_type, data
        )
    job = VideoJobRecord(
        id=media.videos.new_id(),
        model=model,
        prompt=params.prompt,
        seconds=str(seconds),
        size=f"{size[0]}x{size[1]}" if size else "auto",
        owner=info.team_id,
        created_at=time.time(),
        runner_id="",  # set by VideoJobs.start
        heartbeat_at=0.0,
    )
    stats = info.stats

    async def run(reporter: JobReporter) -> Any:
        def invoke(adapter: Adapter) -> Awaitable[Any]:
            return adapter.create_video(form, reporter, stats)

        return await state.router.call(model, Capability.VIDEO, invoke, stats)

    started = await media.videos.start(job, run)
    return _video_response(state, started)


def _video_response(state: AppState, job: VideoJobRecord) -> Response[bytes]:
    response = json_response(media_services(state).videos.wire(job))
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return response


@get("/videos/{video_id:str}", summary="Retrieve a video job")
async def retrieve_video(request: Request[Any, Any, Any], video_id: str) -> Response[bytes]:
    state: AppState = request.app.state.switchyard
    info = request_info(request.scope)
    info.route = "videos"
    job = await media_services(state).videos.get(video_id, info.team_id)
    info.model = job.model
    return _video_response(state, job)


@get("/videos", summary="List video jobs")
async def list_videos(request: Request[Any, Any, Any]) -> Response[bytes]:
    state: AppState = request.app.state.switchyard
    info = request_info(request.scope)
    info.route = "videos"
    videos = media_services(state).videos
    data = [videos.wire(job) for job in await videos.list(info.team_id)]
    return json_response(
        VideoList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )
    )


@delete("/videos/{video_id:str}", summary="Delete a video job and its file", status_code=200)
async def delete_video(request: Request[Any, Any, Any], video_id: str) -> Response[bytes]:
    state: AppState = request.app.state.switchyard
    info = request_info(request.scope)
    info.route = "videos"
    await media_services(state).videos.delete(video_id, info.team_id)
    return json_response(VideoDeleted(id=video_id))


@get("/videos/{video_id:str}/content", summary="Download a finished video")
async def video_content(
    request: Request[Any, Any, Any], video_id: str, variant: str = "video"
) -> Stream:
    state: AppState = request.app.state.switchyard
    info = request_info(request.scope)
    info.route = "videos"
    media = media_services(state)
    job = await media.videos.get(video_id, info.team_id)
    info.model = job.model
    if variant != "video":
        raise NotFound(
            f"Video '{shown(video_id)}' has no {shown(variant)} variant.", param="variant"
        )
    if job.status != "completed" or job.media_id is None:
        raise InvalidRequest(
            f"Video '{video_id}' is {job.status}; its content is available once completed.",
            code="video_not_ready",
        )
    stored = await media.store.find(job.owner, job.media_id)
    response = None if stored is None else await stream_media(media.store, stored, video_id)
    if response is None:
        raise NotFound(f"The content of video '{shown(video_id)}' has expired.")
    return response


def videos_router(guards: list[Any]) -> Router:
    return Router(
        path="/v1",
        route_handlers=[create_video, retrieve_video, list_videos, delete_video, video_content],
        guards=guards,
        tags=["Videos"],
    )
