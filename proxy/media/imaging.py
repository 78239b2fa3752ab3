"""Checking uploaded images and converting produced ones, with Pillow.

Both are blocking work: callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

from proxy.errors import InvalidRequest, shown

#: Pillow format name -> (content type, OpenAI output_format name).
_FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpeg"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
_SAVE_AS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
OUTPUT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    content_type: str
    extension: str
    width: int
    height: int
    has_alpha: bool


def inspect_image(file: IO[bytes], *, param: str, name: str) -> ImageInfo:
    """Identify an uploaded image, or raise a 400 that names the upload.

    ``verify()`` reads the whole file (checking PNG CRCs, for instance), so a truncated
    or corrupt upload is refused here rather than failing inside the engine.
    """
    described = f"The uploaded {param} '{shown(name)}'"
    try:
        file.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                fmt = image.format or ""
                width, height = image.size
                bands = image.getbands()
                alpha = "A" in bands or "transparency" in image.info
                image.verify()
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidRequest(
            f"{described} is not a supported image (PNG, JPEG, WEBP or GIF).", param=param
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequest(f"{described} is a damaged image: {exc}", param=param) from None
    finally:
        file.seek(0)
    if fmt not in _FORMATS:
        raise InvalidRequest(
            f"{described} is {fmt or 'an unknown format'}; PNG, JPEG, WEBP or GIF is required.",
            param=param,
        )
    content_type, extension = _FORMATS[fmt]
    return ImageInfo(content_type, extension, width, height, alpha)


def convert_image(data: bytes, output_format: str, compression: int | None = None) -> bytes:
    """Re-encode ``data`` as ``output_format`` (png, jpeg, webp)."""
    target = _SAVE_AS[output_format]
    with Image.open(io.BytesIO(data)) as image:
        if image.format == target:
            return data
        converted: Image.Image = image
        if target == "JPEG" and image.mode not in ("RGB", "L"):
            converted = image.convert("RGB")
        out = io.BytesIO()
        # OpenAI's output_compression defaults to 100 for the best image: read it as quality.
        quality = 90 if compression is None else max(1, compression)
        options = {} if target == "PNG" else {"quality": quality}
        converted.save(out, format=target, **options)
    return out.getvalue()
