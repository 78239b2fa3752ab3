"""Videos: ``POST /v1/videos``, ``GET /v1/videos/{id}``, ``GET /v1/videos/{id}/content``.

Shapes follow openai-python's ``types/video.py`` and ``video_create_params.py``: a job
object that the client polls until ``status`` is ``completed`` or ``failed``. The SDK
sends ``videos.create`` as multipart (``input_reference`` may be a file); a JSON body is
accepted too, with ``input_reference`` as ``{"image_url": "data:image/...;base64,..."}``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]

#: Longest clip accepted, in seconds; a guard against a request that would run for hours.
MAX_SECONDS = 120


class InputReference(WireRequest):
    image_url: str | UnsetType = UNSET
    file_id: str | UnsetType = UNSET


class VideoCreateRequest(WireRequest):
    model: str
    prompt: str
    seconds: str | int | UnsetType = UNSET
    size: str | UnsetType = UNSET
    input_reference: InputReference | UnsetType = UNSET
    seed: Annotated[int, msgspec.Meta(ge=0)] | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``)."""
    negative_prompt: str | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``)."""
    steps: Annotated[int, msgspec.Meta(ge=1, le=1000)] | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``)."""
    fps: Annotated[int, msgspec.Meta(ge=1, le=120)] | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``): frames per second; default the workflow's."""
    frames: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``): overrides ``seconds`` x ``fps``."""

    def duration(self, default: int = 4) -> int:
        """``seconds`` as an int, validated (the SDK sends a string such as ``"4"``)."""
        if self.seconds is UNSET:
            return default
        text = str(self.seconds).strip()
        if text.isdigit() and 0 < int(text) <= MAX_SECONDS:
            return int(text)
        raise InvalidRequest(
            f"Invalid seconds '{shown(self.seconds)}': "
            f"expected a whole number from 1 to {MAX_SECONDS}.",
            param="seconds",
        )


class VideoError(WireResponse):
    code: str
    message: str


class Video(WireResponse):
    id: str
    created_at: int
    model: str
    progress: int
    seconds: str
    size: str
    status: VideoStatus
    object: Literal["video"] = "video"
    completed_at: int | None = None
    expires_at: int | None = None
    error: VideoError | None = None
    prompt: str | None = None
    remixed_from_video_id: str | None = None


class VideoList(WireResponse):
    data: list[Video]
    object: Literal["list"] = "list"
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VideoDeleted(WireResponse):
    id: str
    deleted: bool = True
    object: Literal["video.deleted"] = "video.deleted"
