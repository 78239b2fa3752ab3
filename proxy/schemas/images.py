"""Images: ``POST /v1/images/generations``, ``/v1/images/edits``, ``/v1/images/variations``.

Field names follow openai-python's ``types/image_generate_params.py``,
``image_edit_params.py`` and ``images_response.py``. Generation controls that OpenAI
has no field for (``seed``, ``negative_prompt``, ``steps``) come through the SDK's
``extra_body``: top-level JSON fields for generations, extra form fields for the
multipart endpoints. Multipart text fields arrive as strings, so the form endpoints
convert them with ``strict=False`` ("2" becomes 2).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse

ImageCount = Annotated[int, msgspec.Meta(ge=1, le=10)]
Steps = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Compression = Annotated[int, msgspec.Meta(ge=0, le=100)]
ResponseFormat = Literal["url", "b64_json"]
OutputFormat = Literal["png", "jpeg", "webp"]

#: Largest width or height accepted in ``size``; beyond it no local engine has memory.
MAX_SIDE = 8192


class _ImageParams(WireRequest, kw_only=True):
    model: str
    n: ImageCount = 1
    size: str | UnsetType | None = UNSET
    response_format: ResponseFormat | UnsetType | None = UNSET
    user: str | UnsetType = UNSET
    seed: Annotated[int, msgspec.Meta(ge=0)] | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``): a fixed seed makes a result repeatable."""
    negative_prompt: str | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``): what the image should not show."""
    steps: Steps | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``): sampler steps, overriding ``quality``."""

    @property
    def wants_b64(self) -> bool:
        return self.response_format == "b64_json"


class ImageGenerationRequest(_ImageParams, kw_only=True):
    prompt: str
    quality: str | UnsetType | None = UNSET
    style: str | UnsetType | None = UNSET
    output_format: OutputFormat | UnsetType | None = UNSET
    output_compression: Compression | UnsetType | None = UNSET
    background: str | UnsetType | None = UNSET


class ImageEditRequest(_ImageParams, kw_only=True):
    prompt: str
    quality: str | UnsetType | None = UNSET
    output_format: OutputFormat | UnsetType | None = UNSET
    output_compression: Compression | UnsetType | None = UNSET
    background: str | UnsetType | None = UNSET
    input_fidelity: str | UnsetType | None = UNSET


class ImageVariationRequest(_ImageParams, kw_only=True):
    prompt: str | UnsetType = UNSET
    """Not an OpenAI field (``extra_body``): steers a variation when the workflow maps it."""


ImageRequest = ImageGenerationRequest | ImageEditRequest | ImageVariationRequest


class ImageData(WireResponse):
    url: str | UnsetType = UNSET
    b64_json: str | UnsetType = UNSET
    revised_prompt: str | UnsetType = UNSET


class ImagesResponse(WireResponse):
    created: int
    data: list[ImageData]
    output_format: str | UnsetType = UNSET
    size: str | UnsetType = UNSET
    quality: str | UnsetType = UNSET
    background: str | UnsetType = UNSET


def parse_size(size: str | UnsetType | None, param: str = "size") -> tuple[int, int] | None:
    """``"1024x768"`` as (width, height); ``None`` for unset or ``"auto"`` (the workflow's own)."""
    if size is UNSET or size is None or size == "auto":
        return None
    assert isinstance(size, str)
    width, sep, height = size.lower().partition("x")
    if sep and width.isdigit() and height.isdigit():
        w, h = int(width), int(height)
        if 0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE:
            return w, h
    raise InvalidRequest(
        f"Invalid size '{shown(size)}': expected WIDTHxHEIGHT (e.g. 1024x1024), each side 1 to "
        f"{MAX_SIDE}, or 'auto'.",
        param=param,
    )
