"""Upload checks and output conversion."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from proxy.errors import InvalidRequest
from proxy.media.imaging import convert_image, inspect_image


def _encoded(mode: str, fmt: str, size: tuple[int, int] = (10, 8)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format=fmt)
    return out.getvalue()


def test_inspect_identifies_format_size_and_alpha() -> None:
    info = inspect_image(io.BytesIO(_encoded("RGBA", "PNG")), param="image", name="a.png")
    assert (info.content_type, info.extension, info.width, info.height) == (
        "image/png",
        "png",
        10,
        8,
    )
    assert info.has_alpha
    jpeg = inspect_image(io.BytesIO(_encoded("RGB", "JPEG")), param="image", name="b.jpg")
    assert jpeg.content_type == "image/jpeg" and not jpeg.has_alpha


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"hello, not an image", "not a supported image"),
        (_encoded("RGB", "PNG")[:-20], "damaged"),
        (_encoded("RGB", "BMP"), "BMP"),
    ],
)
def test_bad_uploads_are_400s_naming_the_file(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        inspect_image(io.BytesIO(data), param="mask", name="upload.bin")
    assert caught.value.param == "mask"
    assert "upload.bin" in caught.value.message and fragment in caught.value.message


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_convert(fmt: str, pil: str) -> None:
    converted = convert_image(_encoded("RGBA", "PNG"), fmt, 80)
    assert Image.open(io.BytesIO(converted)).format == pil
