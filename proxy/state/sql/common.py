"""What the repositories share: rows to records, opaque page cursors, checked changes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)

_cursor_encode = msgspec.json.Encoder().encode
_cursor_decode = msgspec.json.Decoder(list[float | int]).decode


def to_record(row: Mapping[Any, Any], kind: type[T]) -> T:
    """A record from a row; columns the record does not have (hashes, ``deleted_at``)
    are left out. (Column names are ``quoted_name``, a ``str`` subclass that msgspec
    does not take as a key, hence ``str(k)``.)"""
    return msgspec.convert({str(k): v for k, v in row.items()}, kind, strict=False)


def encode_cursor(*position: float | int) -> str:
    """An opaque cursor for a position in a listing (URL-safe base64 of JSON)."""
    return base64.urlsafe_b64encode(_cursor_encode(list(position))).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[float | int]:
    """The position in a cursor from ``encode_cursor``; ``ValueError`` when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = _cursor_decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise ValueError("malformed cursor") from exc
    if len(position) != arity or any(isinstance(p, bool) for p in position):
        raise ValueError("malformed cursor")
    return position


def checked_changes(
    changes: Mapping[str, Any], kind: type[msgspec.Struct], fixed: frozenset[str]
) -> dict[str, Any]:
    """``changes`` as column values, after checking that each names a field of ``kind``
    that may change (not one of ``fixed``) and that the value fits the field's type."""
    fields = {f.name: f for f in msgspec.structs.fields(kind)}
    unknown = sorted(set(changes) - (set(fields) - fixed))
    if unknown:
        raise ValueError(f"cannot change {', '.join(unknown)} of a {kind.__name__}")
    out: dict[str, Any] = {}
    for name, value in changes.items():
        out[name] = msgspec.convert(value, fields[name].type, strict=False)
    return out
