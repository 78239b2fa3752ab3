"""Removing embedded metadata from produced images, without touching their pixels.

Image engines write what made an image into the file: ComfyUI's save nodes put the
whole workflow (upload paths, node settings, checkpoint names) into PNG text chunks
(or private ``comf`` chunks for animated PNG), or into EXIF for WEBP. ``strip_metadata`` removes it.

The containers are walked here rather than re-encoded with Pillow: Pillow would
decode and encode the pixels again (lossy for JPEG and lossy WEBP) and drop parts it
does not model (APNG frames, ICC profiles unless carried over by hand), while copying
every chunk but the metadata keeps the image data byte for byte. The three formats
are simple length-prefixed chunk lists. A file that claims one of them and does not
parse is refused as damaged (``UpstreamError``) rather than passed on with whatever
it carries.

Blocking work (files can be large): callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import struct

from proxy.errors import UpstreamError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The ancillary PNG chunks that change how the image looks (transparency, colour,
#: pixel size, background, palette hints) or make it an animation; every other
#: ancillary chunk goes: text (tEXt, zTXt, iTXt), eXIf, tIME, and private chunks such
#: as the ``comf`` chunks ComfyUI's SaveAnimatedPNG writes. Critical chunks (IHDR,
#: PLTE, IDAT, IEND: an upper-case first letter) always stay.
_PNG_DISPLAY_CHUNKS = frozenset(
    {
        *(b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"cICP", b"mDCV", b"cLLI"),
        *(b"pHYs", b"bKGD", b"hIST", b"sPLT", b"acTL", b"fcTL", b"fdAT"),
    }
)

#: JPEG segments to drop: APP1 (EXIF, XMP), APP3..APP13 (vendor data, IPTC), APP15 and
#: comments. APP0 (JFIF), APP2 (ICC profile) and APP14 (Adobe colour transform) are
#: needed to show the image as it was.
_JPEG_METADATA = frozenset({0xE1, *range(0xE3, 0xEE), 0xEF, 0xFE})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0..RST7: no length
_JPEG_SOS = 0xDA

_WEBP_METADATA = frozenset({b"EXIF", b"XMP "})
_VP8X_EXIF_AND_XMP = 0x08 | 0x04  # the flags that announce those chunks


class _Malformed(ValueError):
    pass


def strip_metadata(data: bytes) -> bytes:
    """``data`` (PNG, JPEG or WEBP) without its metadata: text, EXIF, XMP, comments and
    private chunks; files of other formats come back unchanged."""
    try:
        if data.startswith(_PNG_SIGNATURE):
            return _strip_png(data)
        if data.startswith(b"\xff\xd8"):
            return _strip_jpeg(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _strip_webp(data)
    except _Malformed as exc:
        raise UpstreamError(f"The engine produced a damaged image ({exc}).") from None
    return data


def _strip_png(data: bytes) -> bytes:
    kept = [_PNG_SIGNATURE]
    position = len(_PNG_SIGNATURE)
    while position < len(data):
        if position + 12 > len(data):
            raise _Malformed("truncated PNG chunk")
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            raise _Malformed("truncated PNG chunk")
        if kind[:1].isupper() or kind in _PNG_DISPLAY_CHUNKS:
            kept.append(data[position:end])
        position = end
        if kind == b"IEND":
            break
    return b"".join(kept)


def _strip_jpeg(data: bytes) -> bytes:
    kept = [data[:2]]
    position = 2
    while position < len(data):
        if data[position] != 0xFF:
            raise _Malformed("JPEG segment without a marker")
        marker = data[position + 1] if position + 1 < len(data) else -1
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            kept.append(data[position : position + 2])
            position += 2
            continue
        if position + 4 > len(data):
            raise _Malformed("truncated JPEG segment")
        (length,) = struct.unpack_from(">H", data, position + 2)
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise _Malformed("truncated JPEG segment")
        if marker == _JPEG_SOS:  # the image data follows: copied as it is, to the end
            kept.append(data[position:])
            break
        if marker not in _JPEG_METADATA:
            kept.append(data[position:end])
        position = end
    return b"".join(kept)


def _strip_webp(data: bytes) -> bytes:
    kept: list[bytes] = []
    position = 12
    while position < len(data):
        if position + 8 > len(data):
            raise _Malformed("truncated WEBP chunk")
        kind = data[position : position + 4]
        (length,) = struct.unpack_from("<I", data, position + 4)
        end = position + 8 + length + (length & 1)
        if position + 8 + length > len(data):
            raise _Malformed("truncated WEBP chunk")
        chunk = data[position : min(end, len(data))]
        if kind == b"VP8X" and length >= 1:
            flags = chunk[8] & ~_VP8X_EXIF_AND_XMP
            chunk = chunk[:8] + bytes([flags]) + chunk[9:]
        if kind not in _WEBP_METADATA:
            kept.append(chunk)
        position = end
    body = b"WEBP" + b"".join(kept)
    return b"RIFF" + struct.pack("<I", len(body)) + body
