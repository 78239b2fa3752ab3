"""Multipart requests (image edits and variations, video references) as typed envelopes.

Parsing (``parse_form``) is the ``multipart`` package's push parser, fed from Litestar's
``request.stream()``, which enforces ``server.max_body_mb`` as the body streams in
(413); each file over 1 MiB is spooled to a temporary file, so a large upload is never
held whole in memory. Litestar closes those files when the handler returns. Text fields
become the envelope's ``body`` (forwarded as is by pass-through adapters) and are
validated into the request Struct; files stay file objects, in the order they were sent.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from litestar import Request
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.enums import RequestEncodingType
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState
from multipart import (  # type: ignore[import-untyped]
    MultipartSegment,
    ParserError,
    ParserLimitReached,
    PushMultipartParser,
)

from extensions.activation import form_options, refuse_activation
from proxy.errors import InvalidRequest, PayloadTooLarge, shown
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


def _text_of(segment: MultipartSegment, data: bytearray) -> str:
    name = shown(segment.name)
    charset = segment.charset or "utf-8"
    try:
        return data.decode(charset)
    except LookupError:
        raise InvalidRequest(
            f"The form field '{name}' declares an unknown charset '{shown(charset)}'.",
            param=segment.name,
        ) from None
    except UnicodeDecodeError:
        raise InvalidRequest(
            f"The form field '{name}' is not valid {shown(charset)} text; "
            "send a file as a part with a filename.",
            param=segment.name,
        ) from None


async def _close_all(fields: dict[str, list[Any]], current: Any) -> None:
    for value in [current, *(v for values in fields.values() for v in values)]:
        if isinstance(value, UploadFile):
            await value.close()


async def parse_form(request: Request[Any, Any, Any]) -> FormMultiDict:
    """The ``multipart/form-data`` body of ``request``; bad framing or text is a 400.

    Litestar's own parser (``request.form()``) treats a part with ``filename=""`` as a
    text field and decodes every text field without catching errors, so binary content
    there (an empty file input, as browsers send it) was a 500. Here a part with a
    ``filename`` parameter, even an empty one, is a file (RFC 7578 §4.2), as OpenAI
    accepts any filename; a text field that does not decode is a 400 naming the field.
    The result is stored where Litestar's own would be, so ``request.form()`` returns
    it and Litestar closes the files when the handler returns.
    """
    state = ScopeState.from_scope(request.scope)
    if state.form is not Empty:
        return FormMultiDict.from_form_data(state.form)
    boundary = request.content_type[1].get("boundary")
    if not boundary:
        raise InvalidRequest("The multipart/form-data content type has no boundary.")
    fields: defaultdict[str, list[Any]] = defaultdict(list)
    data: UploadFile | bytearray = bytearray()
    segment: MultipartSegment | None = None
    limit = request.app.multipart_form_part_limit
    stream = request.stream()
    chunk = await anext(stream, b"")
    if not chunk:  # an empty body is an empty form, as with Litestar's parser
        state.form = {}
        return FormMultiDict()
    try:
        with PushMultipartParser(boundary.encode("latin-1"), max_segment_count=limit) as parser:
            while not parser.closed:
                for part in parser.parse(chunk):
                    if isinstance(part, MultipartSegment):
                        segment = part
                        if part.name is None:
                            raise InvalidRequest("A form part has no field name.")
                        if part.filename is not None:
                            data = UploadFile(
                                content_type=part.content_type or "text/plain",  # RFC 7578 §4.4
                                filename=part.filename,
                                headers=dict(part.headerlist),
                            )
                    elif part:
                        if isinstance(data, UploadFile):
                            await data.write(part)
                        else:
                            data.extend(part)
                    else:  # the end of a part
                        if segment is None:
                            raise InvalidRequest("A form part ends before its headers.")
                        if isinstance(data, UploadFile):
                            await data.seek(0)
                            fields[segment.name].append(data)
                        else:
                            fields[segment.name].append(_text_of(segment, data))
                        data, segment = bytearray(), None
                chunk = await anext(stream, b"")
    except ParserLimitReached:
        await _close_all(fields, data)
        raise PayloadTooLarge(
            f"The form has more than {limit} parts, or a part header is too long."
        ) from None
    except ParserError as exc:
        await _close_all(fields, data)
        raise InvalidRequest(f"Invalid multipart/form-data: {shown(exc)}") from None
    except BaseException:
        await _close_all(fields, data)
        raise
    form_data = {k: v if len(v) > 1 else v[0] for k, v in fields.items()}
    state.form = form_data
    return FormMultiDict.from_form_data(form_data)


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
            f"not '{shown(media_type or 'no content type')}'.",
            param=expect or None,
        )
    form = await parse_form(request)
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
    options = form_options(body)
    refuse_activation(request.url.path, str(body.get("model", "")), request.headers, options)
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
