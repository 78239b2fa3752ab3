"""Multipart requests (image edits and variations, video references) as typed envelopes.

Parsing is Litestar's (``request.form()``, built on the ``multipart`` package); it
enforces ``server.max_body_mb`` as the body streams in (413), and spools each file
over 1 MiB to a temporary file, so a large upload is never held whole in memory.
Litestar closes those files when the handler returns. Text fields become the
envelope's ``body`` (forwarded as is by pass-through adapters) and are validated into
the request Struct; files stay file objects, in the order they were sent.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from litestar import Request
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType

from proxy.errors import InvalidRequest, PayloadTooLarge
from proxy.schemas.base import Envelope, WireRequest, validated

T = TypeVar("T", bound=WireRequest)


@dataclass(slots=True)
class Upload:
    field: str
    """The form field as sent (``image``, ``image[]``, ``mask``, ``input_reference``)."""
    filename: str
    content_type: str
    """As the client declared it; adapters trust only what ``inspect_image`` finds."""
    file: IO[bytes]
    size: int

    def rewound(self) -> IO[bytes]:
        self.file.seek(0)
        return self.file

    def read(self) -> bytes:
        return self.rewound().read()

    @classmethod
    def from_bytes(cls, field: str, filename: str, content_type: str, data: bytes) -> Upload:
        return cls(field, filename, content_type, io.BytesIO(data), len(data))


class FormEnvelope(Envelope[T]):
    """An envelope whose request also carried files."""

    __slots__ = ("files",)

    def __init__(self, params: T, body: dict[str, Any], files: list[Upload]) -> None:
        super().__init__(params, body)
        self.files = files

    def uploads(self, name: str) -> list[Upload]:
        """Files sent as ``name`` or ``name[]`` (how the SDKs send lists), in order."""
        return [u for u in self.files if u.field in (name, f"{name}[]")]

    def upload(self, name: str) -> Upload | None:
        found = self.uploads(name)
        return found[0] if found else None


def _size_of(file: IO[bytes]) -> int:
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    return size


def convert_form(
    body: dict[str, Any],
    request_type: type[T],
    files: list[Upload],
    array_fields: frozenset[str] = frozenset(),
) -> FormEnvelope[T]:
    """Validate text fields that arrived as strings (``"2"`` is accepted for an int).

    ``body`` stays as sent (what an upstream expects); the validated view reads array
    fields under their plain name whether they came as ``name[]`` (as the SDKs send them)
    or as a repeated or single ``name`` (as curl users often do).
    """
    values: dict[str, Any] = {}
    for key, value in body.items():
        name = key.removesuffix("[]")
        if key.endswith("[]") or name in array_fields:
            values[name] = value if isinstance(value, list) else [value]
        else:
            values[name] = value
    return FormEnvelope(validated(values, request_type, strict=False), body, files)


async def read_form(
    request: Request[Any, Any, Any],
    request_type: type[T],
    *,
    array_fields: frozenset[str] = frozenset(),
    expect: str = "",
) -> FormEnvelope[T]:
    """Parse a ``multipart/form-data`` body into a validated ``FormEnvelope``.

    ``expect`` names the file field the endpoint needs, for the message (and ``param``)
    of the error a non-multipart request gets.
    """
    media_type = request.content_type[0]
    if media_type != RequestEncodingType.MULTI_PART:
        wanted = f" with a '{expect}' file" if expect else ""
        raise InvalidRequest(
            f"This endpoint takes multipart/form-data{wanted}, "
            f"not '{media_type or 'no content type'}'.",
            param=expect or None,
        )
    form = await request.form()
    body: dict[str, Any] = {}
    files: list[Upload] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            file: IO[bytes] = value.file  # type: ignore[assignment]
            files.append(Upload(name, value.filename, value.content_type, file, _size_of(file)))
        elif name in body:
            previous = body[name]
            body[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            body[name] = value
    return convert_form(body, request_type, files, array_fields)


def decode_data_url(url: str, field: str, *, max_bytes: int) -> Upload:
    """An ``image_url`` given as ``data:<type>;base64,<data>``; remote URLs are refused.

    Fetching arbitrary URLs from the server would let clients reach internal hosts.
    """
    head, sep, payload = url.partition(",")
    if not (sep and head.startswith("data:") and head.endswith(";base64")):
        raise InvalidRequest(
            f"{field}.image_url must be a base64 data URL (data:image/png;base64,...); "
            "remote URLs are not fetched.",
            param=f"{field}.image_url",
        )
    if len(payload) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"{field} is larger than {max_bytes} bytes.", param=field)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field}.image_url is not valid base64.", param=field) from None
    content_type = head[5:-7] or "application/octet-stream"
    return Upload.from_bytes(field, field, content_type, data)
