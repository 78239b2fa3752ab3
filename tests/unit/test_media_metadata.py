"""strip_metadata: text chunks, EXIF and XMP go; the image data stays byte for byte."""

from __future__ import annotations

import io
import json
import struct

import pytest
from PIL import Image, PngImagePlugin

from proxy.errors import UpstreamError
from proxy.media.metadata import strip_metadata

WORKFLOW = json.dumps({"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}}})


def _picture(mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, (24, 16), (10, 200, 30) if mode == "RGB" else (10, 200, 30, 128))
    for x in range(24):
        image.putpixel((x, x % 16), (x * 10, 255 - x * 10, 7) + (() if mode == "RGB" else (255,)))
    return image


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "workflow:" + WORKFLOW  # where ComfyUI's SaveAnimatedWEBP puts it
    exif[0x0110] = "prompt:" + WORKFLOW
    return exif


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        chunks.append(
            (data[position + 4 : position + 8], data[position + 8 : position + 8 + length])
        )
        position += 12 + length
    return chunks


def _png_with_everything() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", WORKFLOW)  # tEXt, as ComfyUI's SaveImage writes it
    info.add_text("workflow", WORKFLOW, zip=True)  # zTXt
    info.add_itxt("parameters", "steps: 20, seed: 1", lang="en", tkey="Parameters")  # iTXt
    info.add(b"comf", b"workflow\0" + WORKFLOW.encode(), after_idat=True)  # SaveAnimatedPNG's
    info.add(b"tIME", b"\x07\xea\x0c\x01\x0c\x00\x00")
    out = io.BytesIO()
    _picture("RGBA").save(out, format="PNG", pnginfo=info, exif=_exif(), dpi=(72, 72))
    return out.getvalue()


def test_png_loses_text_exif_and_private_chunks_and_keeps_the_rest_byte_for_byte() -> None:
    original = _png_with_everything()
    kinds = [kind for kind, _ in _png_chunks(original)]
    metadata = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"comf", b"tIME"}
    assert metadata <= set(kinds)
    stripped = strip_metadata(original)
    assert _png_chunks(stripped) == [c for c in _png_chunks(original) if c[0] not in metadata]
    assert [kind for kind, _ in _png_chunks(stripped)] == [b"IHDR", b"pHYs", b"IDAT", b"IEND"]
    with Image.open(io.BytesIO(stripped)) as image, Image.open(io.BytesIO(original)) as before:
        assert image.text == {}  # type: ignore[attr-defined]
        assert "prompt" not in image.info and "workflow" not in image.info
        assert dict(image.getexif()) == {}
        assert image.info["dpi"] == pytest.approx((72, 72), abs=0.01)
        assert image.tobytes() == before.tobytes()


def test_animated_png_keeps_every_frame() -> None:
    frames = [_picture(), Image.new("RGB", (24, 16), (0, 0, 255))]
    info = PngImagePlugin.PngInfo()
    info.add(b"comf", b"workflow\0" + WORKFLOW.encode(), after_idat=True)
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:], pnginfo=info)
    stripped = strip_metadata(out.getvalue())
    kinds = [kind for kind, _ in _png_chunks(stripped)]
    assert b"comf" not in kinds and {b"acTL", b"fcTL", b"fdAT"} <= set(kinds)
    with Image.open(io.BytesIO(stripped)) as image:
        assert image.n_frames == 2  # type: ignore[attr-defined]
        image.seek(1)
        assert image.convert("RGB").getpixel((0, 0)) == (0, 0, 255)


def test_jpeg_loses_exif_and_comments_and_keeps_its_scan_data() -> None:
    out = io.BytesIO()
    _picture().save(out, format="JPEG", exif=_exif(), comment=b"made from " + WORKFLOW.encode())
    original = out.getvalue()
    assert b"workflow:" in original and b"made from" in original
    stripped = strip_metadata(original)
    assert b"workflow" not in stripped and b"made from" not in stripped
    scan = original.index(b"\xff\xda")
    assert stripped.endswith(original[scan:])
    with Image.open(io.BytesIO(stripped)) as image, Image.open(io.BytesIO(original)) as before:
        assert dict(image.getexif()) == {}
        assert "comment" not in image.info
        assert image.tobytes() == before.tobytes()


def test_webp_loses_exif_and_xmp_and_their_flags() -> None:
    out = io.BytesIO()
    xmp = b"<x:xmpmeta><rdf:RDF>" + WORKFLOW.encode() + b"</rdf:RDF></x:xmpmeta>"
    _picture("RGBA").save(out, format="WEBP", lossless=True, exif=_exif(), xmp=xmp)
    original = out.getvalue()
    assert b"EXIF" in original and b"XMP " in original
    stripped = strip_metadata(original)
    assert b"workflow" not in stripped and b"EXIF" not in stripped and b"XMP " not in stripped
    assert struct.unpack_from("<I", stripped, 4)[0] == len(stripped) - 8
    vp8x = stripped.index(b"VP8X")
    assert stripped[vp8x + 8] & 0x0C == 0
    with Image.open(io.BytesIO(stripped)) as image, Image.open(io.BytesIO(original)) as before:
        assert "exif" not in image.info and "xmp" not in image.info
        assert image.tobytes() == before.tobytes()


def test_other_files_come_back_unchanged() -> None:
    out = io.BytesIO()
    _picture().save(out, format="GIF")
    assert strip_metadata(out.getvalue()) == out.getvalue()
    assert strip_metadata(b"\x00\x00\x00\x18ftypmp42") == b"\x00\x00\x00\x18ftypmp42"


@pytest.mark.parametrize("cut", [20, 40, -5])
def test_a_damaged_image_is_an_upstream_error(cut: int) -> None:
    with pytest.raises(UpstreamError, match="damaged image"):
        strip_metadata(_png_with_everything()[:cut])
